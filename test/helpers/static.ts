/** Shared by the static-forward tests: a spec from its compact text, and a StaticSink fake. */
import type { ForwardChange, Protocol } from '../../src/core/forward.js'
import { parseForwardSpec, type StaticForwardSpec, type StaticSink, type StaticSinkOutcome } from '../../src/mappings/static.js'

export const spec = (text: string): StaticForwardSpec => {
  const r = parseForwardSpec(text)
  if (!r.ok) throw new Error(r.error)
  return r.spec
}

/** A StaticSink with the semantics proposed for MappingTable: one owner per (protocol, port). */
export class FakeSink implements StaticSink {
  readonly held = new Map<string, { address: string; internalPort: number; static: boolean }>()
  reserved = new Set<number>([51820])
  addStatic(address: string, protocol: Protocol, externalPort: number, internalPort: number): StaticSinkOutcome {
    const k = `${protocol}/${externalPort}`
    const h = this.held.get(k)
    if (this.reserved.has(externalPort)) return { ok: false, reason: 'reserved' }
    if (h)
      return h.static && h.address === address && h.internalPort === internalPort ? { ok: true, changes: [], undo: () => {} } : { ok: false, reason: 'taken' }
    this.held.set(k, { address, internalPort, static: true })
    return { ok: true, changes: [{ op: 'add', forward: { protocol, externalPort, internalAddress: address, internalPort } }], undo: () => this.held.delete(k) }
  }
  removeStatic(address: string, protocol: Protocol, externalPort: number) {
    const k = `${protocol}/${externalPort}`
    const h = this.held.get(k)
    if (!h?.static || h.address !== address) return { changes: [], undo: () => {} }
    this.held.delete(k)
    const change: ForwardChange = { op: 'delete', forward: { protocol, externalPort, internalAddress: address, internalPort: h.internalPort } }
    return { changes: [change], undo: () => this.held.set(k, h) }
  }
}
