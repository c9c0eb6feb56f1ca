/** Dispatcher: bounded queues, coalescing into one digest, per-channel rate limits, isolation of slow channels. Fake clock. */
import { describe, expect, it } from 'vitest'
import { silentLogger } from '../../../src/log.js'
import { FakeClock } from '../../../src/core/clock.js'
import { Dispatcher, type Channel, type Message } from '../../../src/notify/dispatcher.js'
import type { WgpmpEvent } from '../../../src/notify/events.js'
import { payloadOf, titleOf, textOf } from '../../../src/notify/format.js'

const ev = (port: number, type: WgpmpEvent['type'] = 'forward.created'): WgpmpEvent => ({
  type,
  time: '2026-12-01T10:00:00.000Z',
  client_id: 'abc',
  client_name: 'laptop',
  client_address: '10.8.0.2',
  protocol: 'udp',
  public_address: '198.51.100.1',
  external_port: port,
  internal_port: port,
  origin: 'static',
  lifetime_seconds: null,
})

/** A channel that records, and whose deliveries finish only when the test says so (or at once). */
function recorder(name: string, opts: { hold?: boolean; fail?: boolean } = {}): Channel & { got: Message[]; release(): void } {
  const got: Message[] = []
  let waiting: (() => void)[] = []
  return {
    name,
    kind: 'webhook',
    target: name,
    got,
    send(m) {
      got.push(m)
      if (opts.fail) return Promise.reject(new Error('down'))
      if (!opts.hold) return Promise.resolve()
      return new Promise<void>((r) => waiting.push(r))
    },
    release() {
      for (const r of waiting) r()
      waiting = []
    },
  }
}
const flush = (): Promise<void> => new Promise((r) => setImmediate(r))

describe('Dispatcher', () => {
  it('one event alone goes as itself, after the coalescing window', () => {
    const clock = new FakeClock()
    const ch = recorder('a')
    const d = new Dispatcher({ channels: [ch], clock, log: silentLogger(), coalesceMs: 1000 })
    d.emit(ev(1))
    clock.advance(999)
    expect(ch.got).toHaveLength(0)
    clock.advance(1)
    expect(ch.got).toEqual([{ kind: 'event', event: ev(1) }])
  })

  it('a 1,000-port burst is one digest per channel', async () => {
    const clock = new FakeClock()
    const a = recorder('a')
    const b = recorder('b')
    const counts: string[] = []
    const d = new Dispatcher({ channels: [a, b], clock, log: silentLogger(), count: (c, o, n) => counts.push(`${c} ${o} ${n}`) })
    for (let p = 20000; p < 21000; p++) d.emit(ev(p))
    clock.advance(1000)
    await flush()
    for (const ch of [a, b]) {
      expect(ch.got).toHaveLength(1)
      const m = ch.got[0]!
      expect(m.kind).toBe('digest')
      if (m.kind === 'digest') expect(m.events).toHaveLength(1000)
      expect(titleOf(m)).toBe('1000 forwards created (laptop)')
      expect(textOf(m).split('\n')).toHaveLength(21)
      expect(payloadOf(m)).toMatchObject({ type: 'digest', count: 1000, counts: { 'forward.created': 1000 }, omitted: 0, dropped: 0 })
    }
    expect(counts).toEqual(['a sent 1000', 'b sent 1000'])
  })

  it('events that arrive while a delivery runs become the next digest', async () => {
    const clock = new FakeClock()
    const ch = recorder('a', { hold: true })
    const d = new Dispatcher({ channels: [ch], clock, log: silentLogger(), coalesceMs: 10 })
    d.emit(ev(1))
    clock.advance(10)
    for (let p = 2; p < 7; p++) d.emit(ev(p, 'forward.removed'))
    clock.advance(5000)
    expect(ch.got).toHaveLength(1)
    ch.release()
    await flush()
    clock.advance(0)
    expect(ch.got).toHaveLength(2)
    expect(ch.got[1]).toMatchObject({ kind: 'digest', dropped: 0 })
    expect(titleOf(ch.got[1]!)).toBe('5 forwards removed (deleted) (laptop)')
  })

  it('the rate limit holds deliveries back and coalesces what waits', async () => {
    const clock = new FakeClock()
    const ch = recorder('a')
    const d = new Dispatcher({ channels: [ch], clock, log: silentLogger(), coalesceMs: 0, ratePerMinute: 2 })
    for (let i = 0; i < 10; i++) {
      d.emit(ev(i))
      clock.advance(1)
      await flush()
    }
    // a burst of min(3, rate) = 2 deliveries, then one per 30 s
    expect(ch.got).toHaveLength(2)
    clock.advance(29_000)
    await flush()
    expect(ch.got).toHaveLength(2)
    clock.advance(1_000)
    await flush()
    expect(ch.got).toHaveLength(3)
    expect(ch.got[2]).toMatchObject({ kind: 'digest' })
    if (ch.got[2]!.kind === 'digest') expect(ch.got[2]!.events.map((e) => e.external_port)).toEqual([2, 3, 4, 5, 6, 7, 8, 9])
  })

  it('a channel that never answers holds only its own queue; a full queue drops and counts', async () => {
    const clock = new FakeClock()
    const dead = recorder('dead', { hold: true })
    const ok = recorder('ok')
    const counts = new Map<string, number>()
    const d = new Dispatcher({
      channels: [dead, ok],
      clock,
      log: silentLogger(),
      coalesceMs: 0,
      queueSize: 5,
      ratePerMinute: 600,
      count: (c, o, n) => counts.set(`${c} ${o}`, (counts.get(`${c} ${o}`) ?? 0) + n),
    })
    for (let i = 0; i < 20; i++) {
      d.emit(ev(i))
      clock.advance(200)
      await flush()
    }
    expect(dead.got).toHaveLength(1)
    expect(d.pending()).toEqual({ dead: 5, ok: 0 })
    expect(counts.get('dead dropped')).toBe(14)
    expect(counts.get('ok sent')).toBe(20)
    expect(counts.get('ok dropped')).toBeUndefined()
    dead.release()
    await flush()
    clock.advance(0)
    const last = dead.got[1]!
    expect(last).toMatchObject({ kind: 'digest', dropped: 14 })
    expect(textOf(last)).toContain('14 more events were dropped')
  })

  it('a failed delivery is counted and does not stop the next one', async () => {
    const clock = new FakeClock()
    const ch = recorder('a', { fail: true })
    const counts: string[] = []
    const d = new Dispatcher({ channels: [ch], clock, log: silentLogger(), coalesceMs: 0, count: (_c, o, n) => counts.push(`${o} ${n}`) })
    d.emit(ev(1))
    clock.advance(0)
    await flush()
    d.emit(ev(2))
    clock.advance(0)
    await flush()
    expect(counts).toEqual(['failed 1', 'failed 1'])
  })

  it("emit never throws, even when a channel's send throws synchronously", () => {
    const clock = new FakeClock()
    const bad: Channel = {
      name: 'bad',
      kind: 'command',
      target: 'x',
      send: () => {
        throw new Error('sync')
      },
    }
    const d = new Dispatcher({ channels: [bad], clock, log: silentLogger(), coalesceMs: 0 })
    expect(() => {
      d.emit(ev(1))
      clock.advance(0)
    }).not.toThrow()
  })
})
