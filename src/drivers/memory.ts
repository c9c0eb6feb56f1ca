/** MemoryDriver: the in-memory ForwardDriver for unit tests (knftables' Fake): all-or-nothing batches. */
import { WgpmpError } from '../core/errors.js'
import type { BaseParams, DriverCapabilities, DriverDescription, ForwardDriver } from './driver.js'

/** Everything but watching; removal chunks as nft's, so tests see the daemon's real chunking. */
export const MEMORY_CAPABILITIES: DriverCapabilities = { ipv6: true, watch: false, bulkDeleteChunk: 250, kernel: false }
import { compareForwards, forwardKey, type Forward, type ForwardChange } from '../core/forward.js'

export class MemoryDriver implements ForwardDriver {
  readonly name = 'memory' as const
  readonly capabilities = MEMORY_CAPABILITIES
  private forwards: Map<string, Forward> | null = null
  base: BaseParams | null = null
  /** The last batch that was applied successfully. */
  lastBatch: readonly ForwardChange[] = []
  /** Number of successful non-empty apply() calls: lets tests check coalescing. */
  batches = 0
  /** When set, the next apply() rejects with this error and changes nothing. */
  failNext: Error | null = null
  /** When set, the Nth apply() from now (1 = the next) rejects with this error and changes nothing. */
  failAt: { n: number; error: Error } | null = null
  /** When set, apply() waits for it first (a slow kernel). */
  gate: Promise<void> | null = null
  /** Every successful batch's size, in order. */
  readonly sizes: number[] = []

  ensureBase(params: BaseParams): Promise<void> {
    this.base = { publicV4: [...params.publicV4], wgInterfaces: [...params.wgInterfaces] }
    this.forwards = new Map()
    return Promise.resolve()
  }

  async apply(changes: readonly ForwardChange[]): Promise<void> {
    if (this.gate) await this.gate
    if (this.failAt && --this.failAt.n === 0) {
      const e = this.failAt.error
      this.failAt = null
      throw e
    }
    return this.applyNow(changes)
  }

  private applyNow(changes: readonly ForwardChange[]): Promise<void> {
    if (this.failNext) {
      const e = this.failNext
      this.failNext = null
      return Promise.reject(e)
    }
    if (!this.forwards) return Promise.reject(new WgpmpError('WGPMP_FORWARD_MISSING', 'memory: base not installed'))
    if (changes.length === 0) return Promise.resolve()
    // Validate against an overlay of the keys this batch touches, then apply: all or nothing, O(batch).
    const overlay = new Map<string, boolean>()
    const present = (k: string): boolean => overlay.get(k) ?? this.forwards!.has(k)
    for (const c of changes) {
      const k = forwardKey(c.forward)
      if (c.op === 'add') {
        if (present(k)) return Promise.reject(new WgpmpError('WGPMP_FORWARD_EXISTS', `memory: ${k} exists`))
        overlay.set(k, true)
      } else {
        if (!present(k)) return Promise.reject(new WgpmpError('WGPMP_FORWARD_MISSING', `memory: ${k} not found`))
        overlay.set(k, false)
      }
    }
    for (const c of changes) {
      const k = forwardKey(c.forward)
      if (c.op === 'add') this.forwards.set(k, { ...c.forward })
      else this.forwards.delete(k)
    }
    this.lastBatch = changes
    this.batches++
    this.sizes.push(changes.length)
    return Promise.resolve()
  }

  list(): Promise<readonly Forward[]> {
    return Promise.resolve([...(this.forwards?.values() ?? [])].sort(compareForwards))
  }

  teardown(): Promise<void> {
    this.forwards = null
    this.base = null
    return Promise.resolve()
  }

  describe(): DriverDescription {
    return { driver: 'memory' }
  }

  watchTable(): null {
    return null
  }

  close(): void {}

  /** Sorted `proto/ext -> addr:port` lines, for readable assertions. */
  dump(): string[] {
    return [...(this.forwards?.values() ?? [])].sort(compareForwards).map((f) => `${forwardKey(f)} -> ${f.internalAddress}:${f.internalPort}`)
  }
}
