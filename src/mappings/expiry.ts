/**
 * ExpiryScheduler: the only code that sets lease timers. One timer, for the earliest deadline;
 * everything due at that moment leaves the table and the kernel, EXPIRY_CHUNK leases per batch.
 */
import type { Logger } from '../log.js'
import type { Cancel, Clock } from '../core/clock.js'
import type { MappingTable, Removal } from './table.js'

/** After a refused delete, try again this much later (the forward stays until then). */
const RETRY_MS = 2_000
/**
 * Leases removed per batch when many are due at once. Between batches the event loop and the
 * group commit take other requests, so a mass expiry delays them by one chunk, not by all of it.
 */
export const EXPIRY_CHUNK = 250
/** Chunks in one go before the timer takes over again (250,000 leases at the default chunk). */
const MAX_ROUNDS = 1000

export class ExpiryScheduler {
  private cancel: Cancel | null = null
  private armedFor: number | null = null
  private stopped = false
  /** A round is committing: it re-arms the timer itself when done. */
  private firing = false

  constructor(
    private readonly clock: Clock,
    private readonly table: MappingTable,
    private readonly commit: (r: Removal) => Promise<void>,
    private readonly log: Logger,
    /** Leases per round (default EXPIRY_CHUNK). */
    private readonly chunk = EXPIRY_CHUNK,
  ) {}

  /** Call after any change to the table: arms the timer for the earliest deadline. */
  reschedule(): void {
    if (this.stopped || this.firing) return
    const next = this.table.nextDeadline()
    if (next === this.armedFor) return
    this.cancel?.()
    this.cancel = null
    this.armedFor = next
    if (next === null) return
    this.cancel = this.clock.setTimer(next - this.clock.now(), () => void this.fire())
  }

  private async fire(): Promise<void> {
    this.firing = true
    try {
      await this.round()
    } finally {
      this.firing = false
    }
    if (!this.cancel) this.reschedule()
  }

  /**
   * Due leases out of the table and the kernel, a chunk per batch, until none is due (or
   * MAX_ROUNDS chunks: the timer then picks the rest up). Between two chunks the event loop runs
   * while the kernel commits, and requests that arrived meanwhile are committed before the next
   * chunk (the group commit is first in, first out). After a refused delete it retries later.
   */
  private async round(): Promise<void> {
    this.cancel = null
    this.armedFor = null
    for (let i = 0; i < MAX_ROUNDS && !this.stopped; i++) {
      const r = this.table.takeExpired(this.chunk)
      if (r.removed.length === 0) return
      try {
        await this.commit(r)
      } catch (err) {
        r.undo()
        this.log.error({ err, count: r.removed.length }, 'expiry: kernel refused the delete; retrying')
        this.cancel = this.clock.setTimer(RETRY_MS, () => void this.fire())
        return
      }
      this.log.info({ count: r.removed.length, forwards: r.removed.slice(0, 20).map((l) => `${l.protocol}/${l.externalPort}`) }, 'leases expired')
      if (r.removed.length < this.chunk) return
    }
  }

  stop(): void {
    this.stopped = true
    this.cancel?.()
    this.cancel = null
  }
}
