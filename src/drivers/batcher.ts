/**
 * GroupCommit: coalesces concurrent driver changes into one atomic batch. Changes submitted while a
 * batch is in flight go into the next one; each submitter's promise settles only after the batch
 * that carried its changes is committed (or refused). If a combined batch is refused, each
 * submission is retried alone, so one bad change fails only its own request.
 */
import { type ForwardDriver } from './driver.js'
import { forwardKey, type ForwardChange } from '../core/forward.js'

interface Job {
  changes: readonly ForwardChange[]
  resolve: () => void
  reject: (e: unknown) => void
}

export interface BatchStats {
  /** Batches sent to the driver. */
  batches: number
  /** Milliseconds of the last batch. */
  lastMs: number
}

export class GroupCommit {
  private queue: Job[] = []
  private running = false
  readonly stats: BatchStats = { batches: 0, lastMs: 0 }

  constructor(
    private readonly driver: ForwardDriver,
    private readonly onBatch: (size: number, ms: number, ok: boolean) => void = () => {},
  ) {}

  /** Resolves once the changes are in the kernel. An empty list resolves at once. */
  submit(changes: readonly ForwardChange[]): Promise<void> {
    if (changes.length === 0) return Promise.resolve()
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ changes, resolve, reject })
      if (!this.running) void this.drain()
    })
  }

  /**
   * Runs fn with the queue held: after the batch in flight, before any queued one (e.g. rebuilding
   * the whole table after someone flushed it). Submissions made meanwhile wait for fn.
   */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    for (let i = 0; i < 10_000 && this.running; i++) await new Promise((r) => setImmediate(r))
    this.running = true
    try {
      return await fn()
    } finally {
      this.running = false
      if (this.queue.length > 0) void this.drain()
    }
  }

  /** Resolves when nothing is queued or in flight. */
  async idle(): Promise<void> {
    for (let i = 0; i < 1000 && (this.running || this.queue.length > 0); i++) await new Promise((r) => setImmediate(r))
  }

  private async drain(): Promise<void> {
    this.running = true
    try {
      while (this.queue.length > 0) {
        const jobs = this.queue
        this.queue = []
        const merged = compact(jobs.flatMap((j) => j.changes))
        try {
          await this.send(merged)
          for (const j of jobs) j.resolve()
        } catch (e) {
          if (jobs.length === 1) {
            jobs[0]!.reject(e)
            continue
          }
          for (const j of jobs) {
            try {
              await this.send(j.changes)
              j.resolve()
            } catch (e2) {
              j.reject(e2)
            }
          }
        }
      }
    } finally {
      this.running = false
    }
  }

  private async send(changes: readonly ForwardChange[]): Promise<void> {
    const t0 = performance.now()
    let ok = false
    try {
      await this.driver.apply(changes)
      ok = true
    } finally {
      const ms = performance.now() - t0
      this.stats.batches++
      this.stats.lastMs = ms
      this.onBatch(changes.length, ms, ok)
    }
  }
}

/**
 * Cancels an add followed later by the delete of the same forward (a lease created and released
 * while a batch was in flight): neither needs to reach the kernel.
 */
export function compact(changes: readonly ForwardChange[]): ForwardChange[] {
  const out: (ForwardChange | null)[] = [...changes]
  const lastAdd = new Map<string, number>()
  out.forEach((c, i) => {
    if (!c) return
    const k = forwardKey(c.forward)
    if (c.op === 'add') lastAdd.set(k, i)
    else {
      const j = lastAdd.get(k)
      const a = j === undefined ? null : out[j]
      if (a && a.forward.internalAddress === c.forward.internalAddress && a.forward.internalPort === c.forward.internalPort) {
        out[j!] = null
        out[i] = null
        lastAdd.delete(k)
      }
    }
  })
  return out.filter((c): c is ForwardChange => c !== null)
}
