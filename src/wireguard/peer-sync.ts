/**
 * PeerSync: reads the interface's peers every `intervalMs` (and on demand), feeds PeerTracker, and
 * hands the resulting events to the daemon. One refresh at a time; concurrent callers share it.
 */
import type { Logger } from '../log.js'
import { repeat, type Cancel, type Clock } from '../core/clock.js'
import type { PeerEvent, PeerSource, PeerTracker } from './peers.js'

/** An unknown source may trigger an immediate refresh at most this often. */
const ON_DEMAND_MIN_MS = 500

export class PeerSync {
  private timer: Cancel | null = null
  private inflight: Promise<void> | null = null
  private lastAt = -Infinity
  private stopped = false
  /** Clock ms of the first failed read of a failing streak (issue 10 §4), else null. */
  private failingSince: number | null = null

  constructor(
    private readonly o: {
      source: PeerSource
      tracker: PeerTracker
      clock: Clock
      intervalMs: number
      onEvents: (events: PeerEvent[]) => Promise<void>
      log: Logger
    },
  ) {}

  /** Reads the peers now and applies the events. Never rejects (a failed read is logged and retried next tick). */
  refresh(): Promise<void> {
    this.inflight ??= this.run().finally(() => {
      this.inflight = null
    })
    return this.inflight
  }

  /** A refresh unless one ran within the last 500 ms (for a NAT-PMP request from an address not yet known). */
  async refreshIfStale(): Promise<void> {
    if (this.inflight) return this.inflight
    if (this.o.clock.now() - this.lastAt < ON_DEMAND_MIN_MS) return
    return this.refresh()
  }

  start(): void {
    if (!this.stopped) this.timer = repeat(this.o.clock, this.o.intervalMs, () => this.refresh())
  }

  stop(): void {
    this.stopped = true
    this.timer?.()
    this.timer = null
  }

  private async run(): Promise<void> {
    this.lastAt = this.o.clock.now()
    let peers
    try {
      peers = await this.o.source.refresh()
    } catch (err) {
      // Issue 10 §4: said once (not a stack trace every refresh); state and forwards are kept.
      if (this.failingSince === null) {
        this.failingSince = this.o.clock.now()
        this.o.log.warn({ why: (err as Error).message }, 'cannot read WireGuard peers (interface gone?); keeping the last known ones and their forwards')
      } else this.o.log.debug({ why: (err as Error).message }, 'WireGuard peers still unreadable')
      return
    }
    if (this.failingSince !== null) {
      this.o.log.info({ downSeconds: Math.round((this.o.clock.now() - this.failingSince) / 1000) }, 'WireGuard peers readable again')
      this.failingSince = null
    }
    const events = this.o.tracker.update(peers)
    if (events.length === 0) return
    try {
      await this.o.onEvents(events)
    } catch (err) {
      this.o.log.error({ err }, 'peer events: handling failed')
    }
  }
}
