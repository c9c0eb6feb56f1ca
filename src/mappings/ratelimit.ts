/**
 * RateLimiter: a per-client token bucket for NAT-PMP requests, with memory bounded by a cap on
 * tracked clients whatever arrives. Time only through the injected Clock; no timers.
 *
 * Defaults: 20 requests/s sustained, burst 40, at most 4096 clients tracked.
 * - Real clients are far below that. A ProtonVPN/gluetun-style loop sends 4 requests every 45 s
 *   (UDP and TCP, each natpmpc run also asking for the public address): 0.09/s. libtorrent and
 *   natpmpc retransmit an unanswered request at 250 ms, doubling (RFC 6886 §3.1), so even a
 *   client that opens 10 mappings at once and retransmits each 3 times before a slow answer sends
 *   ~40 packets in its first ~2 s: the burst absorbs that without a single drop.
 * - A client asking for its whole max_forwards_per_client (128) at once gets 40 at once and then
 *   20/s; the dropped requests are retransmitted by the client (250 ms, 500 ms, ...) and served.
 * - A flood (the 20,000 packets in 2 s = 10,000/s) is cut to 20/s: each accepted request
 *   can cost a kernel batch, so the cap bounds what one client can make the daemon do.
 * - 4096 tracked clients: callers only pass sources inside the WireGuard prefix (others are never
 *   tracked), so with a /24 at most 253 entries exist; 4096 covers a /20 fully and bounds a /16.
 *   Each entry is a few dozen bytes, so the table stays well under 1 MB.
 */
import { WgpmpError } from '../core/errors.js'
import type { Clock } from '../core/clock.js'

export const DEFAULT_RATE_PER_SECOND = 20
export const DEFAULT_BURST = 40
export const DEFAULT_MAX_TRACKED_CLIENTS = 4096

export interface RateLimiterOptions {
  clock: Clock
  /** Sustained requests per second per client (> 0). Default 20. */
  ratePerSecond?: number
  /** Bucket size: requests a client may send at once after being idle (>= 1). Default 40. */
  burst?: number
  /** Most clients tracked at once (>= 1); beyond, the least recently seen is forgotten. Default 4096. */
  maxClients?: number
}

interface Bucket {
  tokens: number
  /** Clock ms of the last refill. */
  at: number
  /** Requests denied since this client was first tracked. */
  drops: number
}

export interface RateLimiterStats {
  /** Clients tracked now (<= maxClients). */
  readonly clients: number
  /** Requests denied since start, including those of clients since forgotten. */
  readonly totalDrops: number
  /** Clients forgotten to stay under maxClients. */
  readonly evictions: number
}

export class RateLimiter {
  private readonly clock: Clock
  private readonly rate: number
  private readonly burst: number
  private readonly max: number
  /** Insertion order = recency order: the first key is the stalest (Map iterates in insertion order). */
  private readonly buckets = new Map<string, Bucket>()
  private totalDrops = 0
  private evictions = 0

  /** Throws WGPMP_CONFIG_INVALID for a rate <= 0, a burst < 1 or a cap < 1 (or non-finite values). */
  constructor(opts: RateLimiterOptions) {
    this.clock = opts.clock
    this.rate = opts.ratePerSecond ?? DEFAULT_RATE_PER_SECOND
    this.burst = opts.burst ?? DEFAULT_BURST
    this.max = opts.maxClients ?? DEFAULT_MAX_TRACKED_CLIENTS
    if (!(Number.isFinite(this.rate) && this.rate > 0)) throw new WgpmpError('WGPMP_CONFIG_INVALID', `rate limit: ratePerSecond must be > 0, got ${this.rate}`)
    if (!(Number.isFinite(this.burst) && this.burst >= 1)) throw new WgpmpError('WGPMP_CONFIG_INVALID', `rate limit: burst must be >= 1, got ${this.burst}`)
    if (!(Number.isInteger(this.max) && this.max >= 1))
      throw new WgpmpError('WGPMP_CONFIG_INVALID', `rate limit: maxClients must be an integer >= 1, got ${this.max}`)
  }

  /**
   * Takes one token for client: true = serve the request, false = drop it without a reply (and
   * count it). A client not seen before starts with a full bucket; if that exceeds maxClients
   * the least recently seen client is forgotten first. Any string is a valid key: the caller
   * decides who is tracked (only sources inside the WireGuard prefix). O(1).
   */
  allow(client: string): boolean {
    const now = this.clock.now()
    let b = this.buckets.get(client)
    if (b) {
      this.buckets.delete(client) // re-inserted below: now the most recently seen
      // A clock that went backwards (it should not: it is monotonic) refills nothing.
      b.tokens = Math.min(this.burst, b.tokens + (Math.max(0, now - b.at) * this.rate) / 1000)
      b.at = now
    } else {
      if (this.buckets.size >= this.max) this.evictStalest()
      b = { tokens: this.burst, at: now, drops: 0 }
    }
    this.buckets.set(client, b)
    if (b.tokens >= 1) {
      b.tokens -= 1
      return true
    }
    b.drops++
    this.totalDrops++
    return false
  }

  /** Requests denied for client while it has been tracked; 0 for a client not tracked. */
  drops(client: string): number {
    return this.buckets.get(client)?.drops ?? 0
  }

  /** The tracked clients with drops, most drops first, at most limit of them (for the API/metrics). */
  topDroppers(limit = 10): { client: string; drops: number }[] {
    const out: { client: string; drops: number }[] = []
    for (const [client, b] of this.buckets) if (b.drops > 0) out.push({ client, drops: b.drops })
    return out.sort((a, b) => b.drops - a.drops || (a.client < b.client ? -1 : 1)).slice(0, Math.max(0, limit))
  }

  /** Forgets a client (e.g. its peer was removed); unknown clients are a no-op. */
  forget(client: string): void {
    this.buckets.delete(client)
  }

  stats(): RateLimiterStats {
    return { clients: this.buckets.size, totalDrops: this.totalDrops, evictions: this.evictions }
  }

  private evictStalest(): void {
    const first = this.buckets.keys().next()
    if (first.done === true) return
    this.buckets.delete(first.value)
    this.evictions++
  }
}
