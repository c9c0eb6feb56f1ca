/**
 * Flows: what happens to the live connections of forwards that are deleted, and of forwards an
 * earlier run left in the kernel. The daemon gets one explicitly (the real one ends them with
 * conntrack); tests that run without a kernel pass `noFlows` and say so, instead of a driver
 * injection silently turning the work off.
 */
import type { Exec } from '../core/exec.js'
import { isV6, type Forward } from '../core/forward.js'
import type { Logger } from '../log.js'
import { flushConntrack, type FlushOptions, type FlushResult } from './conntrack.js'

export interface Flows {
  /** Forwards just deleted from the kernel: their connections end (soon, in one round per burst). */
  ended(forwards: readonly Forward[]): void
  /** Forwards an earlier run left that are not restored: their connections end now. Resolves with how many flows ended. */
  endLeftovers(forwards: readonly Forward[]): Promise<number>
  /** Cancels a pending round. */
  close(): void
}

/** No kernel (memory driver): nothing to end. */
export const noFlows: Flows = { ended: () => {}, endLeftovers: () => Promise.resolve(0), close: () => {} }

/**
 * Conntrack entries of deleted forwards are removed this long after the delete, for all deletes
 * of that window at once: each conntrack run dumps the whole conntrack table, which on a busy
 * server costs milliseconds of CPU, so one per delete slowed every other request (bench/RESULTS.md).
 */
export const FLOW_FLUSH_DELAY_MS = 250

/** Ends DNATed IPv4 flows with conntrack(8) (IPv6 forwards of a NAT66 or pinhole have none to end here). */
export class ConntrackFlows implements Flows {
  private pending: Forward[] = []
  private timer: ReturnType<typeof setTimeout> | null = null

  /** `publicAddresses`: the destinations forwards match (each flow was DNATed from one of them). */
  constructor(private readonly o: { exec: Exec; publicAddresses: readonly string[]; log: Logger; delayMs?: number }) {}

  ended(forwards: readonly Forward[]): void {
    for (const f of forwards) if (!isV6(f.internalAddress)) this.pending.push(f)
    if (this.timer || this.pending.length === 0) return
    this.timer = setTimeout(() => {
      this.timer = null
      const batch = this.pending
      this.pending = []
      void this.flush(batch, { listAbove: 2 }).then((r) => {
        if (r.errors.length > 0 || r.skipped > 0) this.o.log.warn({ errors: r.errors.slice(0, 5), skipped: r.skipped }, 'conntrack flush incomplete')
      })
    }, this.o.delayMs ?? FLOW_FLUSH_DELAY_MS)
  }

  async endLeftovers(forwards: readonly Forward[]): Promise<number> {
    const v4 = forwards.filter((f) => !isV6(f.internalAddress))
    if (v4.length === 0) return 0
    return (await this.flush(v4)).deleted
  }

  /** One flush per destination address, one after the other (usually there is one). */
  private async flush(forwards: readonly Forward[], opts: FlushOptions = {}): Promise<{ deleted: number; skipped: number; errors: FlushResult['errors'] }> {
    let deleted = 0
    let skipped = 0
    const errors: FlushResult['errors'][number][] = []
    for (const a of this.o.publicAddresses) {
      const r = await flushConntrack(this.o.exec, forwards, a, opts)
      deleted += r.deleted
      skipped += r.skipped.length
      errors.push(...r.errors)
    }
    return { deleted, skipped, errors }
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
  }
}
