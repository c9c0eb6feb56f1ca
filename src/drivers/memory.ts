/** MemoryDriver: the in-memory ForwardDriver for unit tests (knftables' Fake): all-or-nothing batches. */
import { WgpmpError } from '../errors.js'
import {
  compareForwards,
  forwardKey,
  type BaseParams,
  type Forward,
  type ForwardChange,
  type ForwardDriver,
} from './driver.js'

export class MemoryDriver implements ForwardDriver {
  readonly name = 'memory' as const
  private forwards: Map<string, Forward> | null = null
  base: BaseParams | null = null
  /** The last batch that was applied successfully. */
  lastBatch: readonly ForwardChange[] = []
  /** Number of successful non-empty apply() calls: lets tests check coalescing. */
  batches = 0
  /** When set, the next apply() rejects with this error and changes nothing. */
  failNext: Error | null = null

  ensureBase(params: BaseParams): Promise<void> {
    this.base = { publicV4: [...params.publicV4], wgInterfaces: [...params.wgInterfaces] }
    this.forwards = new Map()
    return Promise.resolve()
  }

  apply(changes: readonly ForwardChange[]): Promise<void> {
    if (this.failNext) {
      const e = this.failNext
      this.failNext = null
      return Promise.reject(e)
    }
    if (!this.forwards) return Promise.reject(new WgpmpError('WGPMP_NFT_NOT_FOUND', 'memory: base not installed'))
    if (changes.length === 0) return Promise.resolve()
    const next = new Map(this.forwards)
    for (const c of changes) {
      const k = forwardKey(c.forward)
      if (c.op === 'add') {
        if (next.has(k)) return Promise.reject(new WgpmpError('WGPMP_NFT_EXISTS', `memory: ${k} exists`))
        next.set(k, { ...c.forward })
      } else {
        if (!next.delete(k)) return Promise.reject(new WgpmpError('WGPMP_NFT_NOT_FOUND', `memory: ${k} not found`))
      }
    }
    this.forwards = next
    this.lastBatch = changes
    this.batches++
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

  /** Sorted `proto/ext -> addr:port` lines, for readable assertions. */
  dump(): string[] {
    return [...(this.forwards?.values() ?? [])]
      .sort(compareForwards)
      .map((f) => `${forwardKey(f)} -> ${f.internalAddress}:${f.internalPort}`)
  }
}
