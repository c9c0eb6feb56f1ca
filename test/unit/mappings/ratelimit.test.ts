/** RateLimiter: token bucket per client, drop counting, bounded memory, validated options. */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { FakeClock } from '../../../src/core/clock.js'
import { DEFAULT_BURST, DEFAULT_MAX_TRACKED_CLIENTS, DEFAULT_RATE_PER_SECOND, RateLimiter } from '../../../src/mappings/ratelimit.js'
import { isWgpmpError } from '../../../src/core/errors.js'

const count = (n: number, f: () => boolean): number => {
  let ok = 0
  for (let i = 0; i < n; i++) if (f()) ok++
  return ok
}

describe('RateLimiter', () => {
  it('documents its defaults: 20/s, burst 40, 4096 clients', () => {
    expect([DEFAULT_RATE_PER_SECOND, DEFAULT_BURST, DEFAULT_MAX_TRACKED_CLIENTS]).toEqual([20, 40, 4096])
  })

  it('allows a burst of exactly B at once, then drops and counts the rest', () => {
    const clock = new FakeClock(1000)
    const rl = new RateLimiter({ clock })
    expect(count(DEFAULT_BURST, () => rl.allow('10.8.0.2'))).toBe(DEFAULT_BURST)
    expect(rl.allow('10.8.0.2')).toBe(false)
    expect(count(9, () => rl.allow('10.8.0.2'))).toBe(0)
    expect(rl.drops('10.8.0.2')).toBe(10)
    expect(rl.stats()).toEqual({ clients: 1, totalDrops: 10, evictions: 0 })
  })

  it('refills at R per second, never above B', () => {
    const clock = new FakeClock()
    const rl = new RateLimiter({ clock, ratePerSecond: 20, burst: 40 })
    count(40, () => rl.allow('a'))
    clock.advance(49) // 0.98 token
    expect(rl.allow('a')).toBe(false)
    clock.advance(1) // 0.98 + 0.02 = 1 token
    expect(rl.allow('a')).toBe(true)
    expect(rl.allow('a')).toBe(false)
    clock.advance(1000)
    expect(count(100, () => rl.allow('a'))).toBe(20)
    clock.advance(3_600_000) // an hour idle: full bucket, not 72,000 tokens
    expect(count(100, () => rl.allow('a'))).toBe(40)
  })

  it('one client flooding does not take tokens from another', () => {
    const clock = new FakeClock()
    const rl = new RateLimiter({ clock })
    // The flood: 20,000 packets in 2 s from one client, a normal client in between.
    let flooded = 0
    const normal: boolean[] = []
    for (let i = 0; i < 20_000; i++) {
      if (i > 0 && i % 500 === 0) clock.advance(50) // 39 steps of 50 ms: 1.95 s; each step earns exactly 1 token
      if (rl.allow('10.8.0.66')) flooded++
      if (i % 5000 === 0) normal.push(rl.allow('10.8.0.2'))
    }
    expect(normal).toEqual([true, true, true, true])
    expect(flooded).toBe(DEFAULT_BURST + 39) // the burst, then 20/s over 1.95 s
    expect(rl.drops('10.8.0.66')).toBe(20_000 - flooded)
    expect(rl.drops('10.8.0.2')).toBe(0)
  })

  it('a ProtonVPN-style loop (4 requests every 45 s) and RFC 6886 retransmits are never dropped', () => {
    const clock = new FakeClock()
    const rl = new RateLimiter({ clock })
    for (let loop = 0; loop < 100; loop++) {
      expect(count(4, () => rl.allow('10.8.0.2'))).toBe(4)
      clock.advance(45_000)
    }
    // 10 mappings at once, each retransmitted at 250, 500, 1000 ms (no answer in time).
    for (const wait of [0, 250, 250, 500]) {
      clock.advance(wait)
      expect(count(10, () => rl.allow('10.8.0.3'))).toBe(10)
    }
    expect(rl.stats().totalDrops).toBe(0)
  })

  it('tracks at most maxClients, forgetting the least recently seen', () => {
    const clock = new FakeClock()
    const rl = new RateLimiter({ clock, maxClients: 3, burst: 1, ratePerSecond: 0.001 })
    rl.allow('a')
    rl.allow('b')
    expect(rl.allow('a')).toBe(false) // a is now the most recent, b the stalest
    rl.allow('c')
    rl.allow('d') // evicts b
    expect(rl.stats()).toEqual({ clients: 3, totalDrops: 1, evictions: 1 })
    expect(rl.drops('a')).toBe(1)
    expect(rl.allow('b')).toBe(true) // b was forgotten: a fresh bucket again; a is now the stalest and goes
    expect(rl.drops('a')).toBe(0)
    expect(rl.allow('c')).toBe(false) // c is still tracked: its one token is spent
    expect(rl.stats()).toEqual({ clients: 3, totalDrops: 2, evictions: 2 })
  })

  it('stays bounded whatever keys arrive (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.string({ maxLength: 8 }), fc.nat(2000)), { maxLength: 400 }), fc.integer({ min: 1, max: 16 }), (events, max) => {
        const clock = new FakeClock()
        const rl = new RateLimiter({ clock, maxClients: max, burst: 2, ratePerSecond: 1 })
        let drops = 0
        for (const [k, dt] of events) {
          clock.advance(dt)
          if (!rl.allow(k)) drops++
          expect(rl.stats().clients).toBeLessThanOrEqual(max)
        }
        expect(rl.stats().totalDrops).toBe(drops)
      }),
      { numRuns: 200, seed: 5 },
    )
  })

  it('lists top droppers and forgets clients', () => {
    const clock = new FakeClock()
    const rl = new RateLimiter({ clock, burst: 1 })
    count(4, () => rl.allow('x'))
    count(2, () => rl.allow('y'))
    rl.allow('z')
    expect(rl.topDroppers()).toEqual([
      { client: 'x', drops: 3 },
      { client: 'y', drops: 1 },
    ])
    expect(rl.topDroppers(1)).toEqual([{ client: 'x', drops: 3 }])
    rl.forget('x')
    expect(rl.drops('x')).toBe(0)
    expect(rl.allow('x')).toBe(true)
    rl.forget('never-seen')
    expect(rl.stats().totalDrops).toBe(4)
  })

  it.each([
    { ratePerSecond: 0 },
    { ratePerSecond: -1 },
    { ratePerSecond: Number.NaN },
    { burst: 0.5 },
    { burst: Infinity },
    { maxClients: 0 },
    { maxClients: 1.5 },
  ])('rejects %o', (o) => {
    let err: unknown
    try {
      new RateLimiter({ clock: new FakeClock(), ...o })
    } catch (e) {
      err = e
    }
    expect(isWgpmpError(err, 'WGPMP_CONFIG_INVALID')).toBe(true)
  })
})
