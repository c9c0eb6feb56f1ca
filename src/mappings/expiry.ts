/**
 * ExpiryScheduler: the only code that sets lease timers. One timer, for the earliest deadline;
 * everything due at that moment leaves the table and the kernel in one batch.
 */
import type { Logger } from '../log.js'
import type { Cancel, Clock } from './clock.js'
import type { MappingTable, Removal } from './table.js'

/** After a refused delete, try again this much later (the forward stays until then). */
const RETRY_MS = 2_000

export class ExpiryScheduler {
  private cancel: Cancel | null = null
  private armedFor: number | null = null
  private stopped = false

  constructor(
    private readonly clock: Clock,
    private readonly table: MappingTable,
    private readonly commit: (r: Removal) => Promise<void>,
    private readonly log: Logger,
  ) {}

  /** Call after any change to the table: arms the timer for the earliest deadline. */
  reschedule(): void {
    if (this.stopped) return
    const next = this.table.nextDeadline()
    if (next === this.armedFor) return
    this.cancel?.()
    this.cancel = null
    this.armedFor = next
    if (next === null) return
    this.cancel = this.clock.setTimer(next - this.clock.now(), () => void this.fire())
  }

  private async fire(): Promise<void> {
    this.cancel = null
    this.armedFor = null
    const r = this.table.takeExpired()
    if (r.removed.length > 0) {
      try {
        await this.commit(r)
        this.log.info({ count: r.removed.length, forwards: r.removed.slice(0, 20).map((l) => `${l.protocol}/${l.externalPort}`) }, 'leases expired')
      } catch (err) {
        r.undo()
        this.log.error({ err, count: r.removed.length }, 'expiry: kernel refused the delete; retrying')
        this.cancel = this.clock.setTimer(RETRY_MS, () => void this.fire())
        return
      }
    }
    this.reschedule()
  }

  stop(): void {
    this.stopped = true
    this.cancel?.()
    this.cancel = null
  }
}
