/**
 * ExpiryScheduler: the only code that sets lease timers. One timer, for the earliest deadline;
 * everything due at that moment leaves the table and the kernel in one batch.
 */
import type { Logger } from '../log.js'
import type { Cancel, Clock } from './clock.js'
import type { MappingTable, Removal } from './table.js'

/** After a refused delete, try again this much later (the forward stays until then). */
const RETRY_MS = 2_000
/**
 * Leases removed per batch when many are due at once. Between batches the event loop and the
 * group commit take other requests, so a mass expiry delays them by one chunk, not by all of it.
 */
export const EXPIRY_CHUNK = 250

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

  /** One chunk of due leases out of the table and the kernel; arms the next round itself when needed. */
  private async round(): Promise<void> {
    this.cancel = null
    this.armedFor = null
    const r = this.table.takeExpired(this.chunk)
    if (r.removed.length > 0) {
      try {
        await this.commit(r)
        this.log.info({ count: r.removed.length, forwards: r.removed.slice(0, 20).map((l) => `${l.protocol}/${l.externalPort}`) }, 'leases expired')
        if (r.removed.length === this.chunk && !this.stopped) {
          // More may be due: the next chunk after other work had its turn.
          this.cancel = this.clock.setTimer(0, () => void this.fire())
          return
        }
      } catch (err) {
        r.undo()
        this.log.error({ err, count: r.removed.length }, 'expiry: kernel refused the delete; retrying')
        this.cancel = this.clock.setTimer(RETRY_MS, () => void this.fire())
        return
      }
    }
  }

  stop(): void {
    this.stopped = true
    this.cancel?.()
    this.cancel = null
  }
}
