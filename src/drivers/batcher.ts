/**
 * GroupCommit: coalesces concurrent driver changes into one atomic batch. Changes submitted while a
 * batch is in flight go into the next one; each submitter's promise settles only after the batch
 * that carried its changes is committed (or refused). If a combined batch is refused, each
 * submission is retried alone, so one bad change fails only its own request.
 *
 * It is one queue with one worker: batches and exclusive work (a table rebuild) never overlap, and
 * nothing waits by polling.
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
  /** Submissions not yet sent, in order. */
  private jobs: Job[] = []
  /** Exclusive work not yet started, in order; it runs before the submissions waiting. Each settles its caller's promise and never rejects. */
  private exclusives: (() => Promise<void>)[] = []
  /** The worker runs: a batch or exclusive work is in flight, or more is queued. */
  private running = false
  private idleWaiters: (() => void)[] = []
  readonly stats: BatchStats = { batches: 0, lastMs: 0 }

  constructor(
    private readonly driver: Pick<ForwardDriver, 'apply'>,
    private readonly onBatch: (size: number, ms: number, ok: boolean) => void = () => {},
  ) {}

  /** Resolves once the changes are in the kernel. An empty list resolves at once. */
  submit(changes: readonly ForwardChange[]): Promise<void> {
    if (changes.length === 0) return Promise.resolve()
    return new Promise<void>((resolve, reject) => {
      this.jobs.push({ changes, resolve, reject })
      this.wake()
    })
  }

  /**
   * Runs fn alone (e.g. rebuilding the whole table after someone flushed it): after the batch or
   * exclusive work in flight, however long it takes, and before every submission not yet sent.
   * Submissions made while it waits or runs wait for it. Settles as fn does. fn must not await
   * submit() or exclusive() (they would wait for fn): it calls the driver itself.
   *
   * With absorbQueued, fn writes the whole state (a rebuild from the lease table), so the
   * submissions still queued when it starts need no batch of their own: fn is called in the same
   * tick as they are taken and must read the state it writes before its first await; they resolve
   * when fn does. If fn fails, they go back to the head of the queue and are sent as usual.
   * (Without it, an add queued behind a rebuild that already wrote that forward is refused as
   * existing.)
   */
  exclusive<T>(fn: () => Promise<T>, opts: { absorbQueued?: boolean } = {}): Promise<T> {
    let settle!: { resolve: (v: T) => void; reject: (e: unknown) => void }
    const result = new Promise<T>((resolve, reject) => (settle = { resolve, reject }))
    this.exclusives.push(async () => {
      const held = opts.absorbQueued === true ? this.jobs.splice(0) : []
      try {
        const v = await fn() // called in the same tick as the splice
        for (const j of held) j.resolve()
        settle.resolve(v)
      } catch (e) {
        this.jobs.unshift(...held)
        settle.reject(e)
      }
    })
    this.wake()
    return result
  }

  /** Resolves when nothing is queued or in flight (at once if so now). */
  idle(): Promise<void> {
    if (!this.running) return Promise.resolve()
    return new Promise<void>((resolve) => this.idleWaiters.push(resolve))
  }

  private wake(): void {
    if (!this.running) void this.drain()
  }

  private async drain(): Promise<void> {
    this.running = true
    try {
      for (;;) {
        const work = this.exclusives.shift()
        if (work) {
          await work()
          continue
        }
        if (this.jobs.length === 0) break
        const jobs = this.jobs
        this.jobs = []
        await this.commit(jobs)
      }
    } finally {
      this.running = false
      // Something still queued only if the loop itself threw (it does not): go on with it.
      if (this.jobs.length > 0 || this.exclusives.length > 0) this.wake()
      else for (const w of this.idleWaiters.splice(0)) w()
    }
  }

  /** Sends the jobs as one batch, or each alone if the batch is refused; settles every job, never rejects. */
  private async commit(jobs: readonly Job[]): Promise<void> {
    const merged = compact(jobs.flatMap((j) => j.changes))
    try {
      await this.send(merged)
      for (const j of jobs) j.resolve()
      return
    } catch (e) {
      if (jobs.length === 1) {
        jobs[0]!.reject(e)
        return
      }
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
