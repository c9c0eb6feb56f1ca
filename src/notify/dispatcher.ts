/**
 * Dispatcher: the EventSink the daemon emits into. Each channel has its own bounded queue, its own
 * rate limit (token bucket) and at most one delivery in flight, so a slow or dead channel holds up
 * only its own queue: emit() pushes and returns, and no request waits for any delivery.
 *
 * Coalescing: the first event into an idle channel waits `coalesceMs`, so that a burst (a 1,000-
 * port static range, a delete-all, a mass expiry) is all queued by then; whatever is queued when a
 * delivery starts goes as one message: the event itself if it is alone, else one digest. While a
 * delivery runs or the rate limit holds, new events queue up and become the next digest.
 * A full queue drops the newest events and counts them; the next digest says how many.
 */
import type { Logger } from '../log.js'
import type { Cancel, Clock } from '../core/clock.js'
import type { EventSink, WgpmpEvent } from './events.js'

export type Message =
  | { readonly kind: 'event'; readonly event: WgpmpEvent }
  /** `events` in order of emission; `dropped`: events lost to a full queue since the last delivery. */
  | { readonly kind: 'digest'; readonly events: readonly WgpmpEvent[]; readonly dropped: number }

export type ChannelKind = 'webhook' | 'ntfy' | 'email' | 'command'

export interface Channel {
  /** Unique and free of secrets: "webhook-1", "ntfy-1", "email", "command-1" (metrics label). */
  readonly name: string
  readonly kind: ChannelKind
  /** Where it goes, for people (a URL without credentials, an argv[0]). */
  readonly target: string
  /** Delivers one message, with the channel's own retries and timeout; rejects if it gave up. */
  send(m: Message): Promise<void>
  close?(): void
}

export type Outcome = 'sent' | 'failed' | 'dropped'

export interface DispatcherOptions {
  channels: readonly Channel[]
  clock: Clock
  log: Logger
  /** Events a channel may hold waiting (default 10,000); more are dropped and counted. */
  queueSize?: number | undefined
  /** How long the first event of a burst waits for the rest (default 1000 ms). */
  coalesceMs?: number | undefined
  /** Deliveries per minute per channel (default 10), in bursts of up to 3. */
  ratePerMinute?: number | undefined
  /** Counts events per channel and outcome (wgpmp_notifications_total). */
  count?: ((channel: string, outcome: Outcome, events: number) => void) | undefined
}

interface ChannelState {
  readonly ch: Channel
  queue: WgpmpEvent[]
  dropped: number
  busy: boolean
  timer: Cancel | null
  tokens: number
  refilledAt: number
  closed: boolean
  inflight: Promise<void> | null
}

export const DEFAULT_QUEUE_SIZE = 10_000
export const DEFAULT_COALESCE_MS = 1000
export const DEFAULT_RATE_PER_MINUTE = 10
const BURST = 3

export class Dispatcher implements EventSink {
  private readonly states: ChannelState[]
  private readonly queueSize: number
  private readonly coalesceMs: number
  private readonly msPerToken: number
  private readonly burst: number

  constructor(private readonly o: DispatcherOptions) {
    this.queueSize = o.queueSize ?? DEFAULT_QUEUE_SIZE
    this.coalesceMs = o.coalesceMs ?? DEFAULT_COALESCE_MS
    const rate = o.ratePerMinute ?? DEFAULT_RATE_PER_MINUTE
    this.msPerToken = 60_000 / rate
    this.burst = Math.min(BURST, rate)
    this.states = o.channels.map((ch) => ({
      ch,
      queue: [],
      dropped: 0,
      busy: false,
      timer: null,
      tokens: this.burst,
      refilledAt: o.clock.now(),
      closed: false,
      inflight: null,
    }))
  }

  get channels(): readonly Channel[] {
    return this.states.map((s) => s.ch)
  }

  /** Events waiting per channel (tests, diagnostics). */
  pending(): Record<string, number> {
    return Object.fromEntries(this.states.map((s) => [s.ch.name, s.queue.length]))
  }

  emit(e: WgpmpEvent): void {
    for (const s of this.states) {
      try {
        if (s.closed) continue
        if (s.queue.length >= this.queueSize) {
          s.dropped++
          this.o.count?.(s.ch.name, 'dropped', 1)
          continue
        }
        s.queue.push(e)
        if (!s.busy && !s.timer) s.timer = this.o.clock.setTimer(this.coalesceMs, () => this.pump(s))
      } catch {
        // never throws into the caller
      }
    }
  }

  private refill(s: ChannelState): void {
    const now = this.o.clock.now()
    const gained = Math.floor((now - s.refilledAt) / this.msPerToken)
    if (gained > 0) {
      s.tokens = Math.min(this.burst, s.tokens + gained)
      s.refilledAt = s.tokens === this.burst ? now : s.refilledAt + gained * this.msPerToken
    }
  }

  private pump(s: ChannelState, ignoreLimit = false): void {
    s.timer = null
    if (s.busy || s.queue.length === 0) return
    this.refill(s)
    if (s.tokens < 1 && !ignoreLimit) {
      const wait = Math.max(1, Math.ceil(s.refilledAt + this.msPerToken - this.o.clock.now()))
      s.timer = this.o.clock.setTimer(wait, () => this.pump(s))
      return
    }
    if (!ignoreLimit) s.tokens--
    const events = s.queue
    const dropped = s.dropped
    s.queue = []
    s.dropped = 0
    const first = events[0]!
    const m: Message = events.length === 1 && dropped === 0 ? { kind: 'event', event: first } : { kind: 'digest', events, dropped }
    s.busy = true
    const started = this.o.clock.now()
    // A send that throws synchronously is a failed delivery too, never an exception in a timer.
    s.inflight = new Promise<void>((resolve) => resolve(s.ch.send(m)))
      .then(
        () => {
          this.o.count?.(s.ch.name, 'sent', events.length)
          this.o.log.debug({ channel: s.ch.name, events: events.length, ms: Math.round(this.o.clock.now() - started) }, 'notification sent')
        },
        (err: unknown) => {
          this.o.count?.(s.ch.name, 'failed', events.length)
          this.o.log.warn({ channel: s.ch.name, events: events.length, err: errText(err) }, 'notification failed; dropped')
        },
      )
      .finally(() => {
        s.busy = false
        s.inflight = null
        if (s.queue.length > 0 && !s.timer && !s.closed) s.timer = this.o.clock.setTimer(0, () => this.pump(s))
      })
  }

  /**
   * Stops accepting events; what is queued goes out now (past the rate limit), and this waits up
   * to graceMs for the deliveries in flight. Never rejects.
   */
  async close(graceMs = 2000): Promise<void> {
    for (const s of this.states) {
      s.timer?.()
      s.timer = null
      s.closed = true
      if (!s.busy) this.pump(s, true)
    }
    const all = Promise.all(this.states.map((s) => s.inflight ?? Promise.resolve()))
    let cancel: Cancel = () => {}
    await Promise.race([all, new Promise<void>((r) => (cancel = this.o.clock.setTimer(graceMs, r)))])
    cancel()
    for (const s of this.states) s.ch.close?.()
  }
}

export const errText = (err: unknown): string => (err instanceof Error ? err.message : String(err))
