// Issue 10 §3: a client's port changed after a lapse or a delete (gluetun #3196, #3469, #3408: apps
// then listen on a stale port). Its port is now held for it for port_hold_seconds.
import { afterEach, describe, expect, it } from 'vitest'
import { FakeClock } from '../../../src/core/clock.js'
import { MappingTable, type MapRequest, type TableOptions } from '../../../src/mappings/table.js'
import { encodeRequest } from '../../../src/protocol/natpmp.js'
import { A, B, KEY_A, startTestDaemon, type TestDaemon } from '../../helpers/daemon.js'

const C = '10.8.0.2'
const D = '10.8.0.3'
const HOLD = 86_400
function make(over: Partial<TableOptions> = {}, clock = new FakeClock(1_000)) {
  let seed = 3
  const random = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000
  return {
    clock,
    table: new MappingTable({ clock, minPort: 1024, maxPort: 65535, minLifetimeSeconds: 60, maxLifetimeSeconds: 7200, random, portHoldSeconds: HOLD, ...over }),
  }
}
const req = (over: Partial<MapRequest> = {}): MapRequest => ({
  client: C,
  protocol: 'tcp',
  internalPort: 8080,
  suggestedExternalPort: 0,
  lifetimeSeconds: 60,
  ...over,
})
const port = (t: MappingTable, r: MapRequest): number => {
  const o = t.map(r)
  if (!o.ok) throw new Error(`refused: ${o.reason}`)
  return o.lease.externalPort
}

describe('issue 10 §3: a client keeps its port (fake clock)', () => {
  it('after a lapse: the same port on the next request, whatever it suggests', () => {
    const { table, clock } = make()
    const p = port(table, req({ suggestedExternalPort: 40000 }))
    clock.advance(61_000)
    expect(table.takeExpired().removed).toHaveLength(1)
    clock.advance(3_600_000) // an hour later, well within the hold
    expect(port(table, req({ suggestedExternalPort: 50000 }))).toBe(p)
  })
  it('after a delete: the same port; and a symmetric lease (internal 0) gets its port back too', () => {
    const { table } = make()
    const p = port(table, req())
    table.remove(C, 'tcp', 8080)
    expect(port(table, req({ suggestedExternalPort: 1 }))).toBe(p)
    const x = port(table, req({ protocol: 'udp', internalPort: 0, suggestedExternalPort: 1 }))
    table.remove(C, 'udp', x)
    expect(port(table, req({ protocol: 'udp', internalPort: 0, suggestedExternalPort: 1 }))).toBe(x)
  })
  it('another client asking for the held port does not get it; after the hold it can', () => {
    const { table, clock } = make()
    const p = port(table, req({ suggestedExternalPort: 40000 }))
    table.remove(C, 'tcp', 8080)
    expect(port(table, req({ client: D, suggestedExternalPort: p }))).not.toBe(p)
    clock.advance(HOLD * 1000 + 1)
    expect(port(table, req({ client: D, internalPort: 9000, suggestedExternalPort: p }))).toBe(p)
  })
  it('across a restart: holds() read into a new table keep the port for its client', () => {
    const { table, clock } = make()
    const p = port(table, req())
    table.remove(C, 'tcp', 8080)
    const saved = table.holds()
    expect(saved).toEqual([{ client: C, internalPort: 8080, externalPort: p, until: clock.now() + HOLD * 1000 }])
    const next = make({}, clock).table
    for (const h of saved) expect(next.restoreHold(h)).toBe(true)
    expect(port(next, req({ client: D, internalPort: 1, suggestedExternalPort: p }))).not.toBe(p)
    expect(port(next, req({ suggestedExternalPort: 2000 }))).toBe(p)
  })
  it('exhaustion: a held port goes to another client only when no other port in range is free', () => {
    const { table } = make({ minPort: 2000, maxPort: 2002 })
    const held = port(table, req())
    table.remove(C, 'tcp', 8080)
    const got = [port(table, req({ client: D, internalPort: 1 })), port(table, req({ client: D, internalPort: 2 }))]
    expect(got).not.toContain(held)
    expect(port(table, req({ client: D, internalPort: 3 }))).toBe(held) // nothing else is left
    // The holder then gets another port (none left here: refused), never a port that is in use.
    expect(table.map(req()).ok).toBe(false)
  })
  it('a static forward takes a held port; the client then gets another one', () => {
    const { table } = make()
    const p = port(table, req())
    table.remove(C, 'tcp', 8080)
    expect(table.addStatic(D, 'tcp', p, 80).ok).toBe(true)
    expect(port(table, req())).not.toBe(p)
  })
  it('port_hold_seconds 0 holds nothing', () => {
    const { table } = make({ portHoldSeconds: 0, minPort: 2000, maxPort: 2001 })
    const p = port(table, req())
    table.remove(C, 'tcp', 8080)
    expect(table.holds()).toEqual([])
    expect(port(table, req({ client: D, suggestedExternalPort: p }))).toBe(p)
  })
})

let t: TestDaemon | null = null
afterEach(async () => {
  await t?.stop()
  t = null
})
const map = (internalPort: number, suggested: number, lifetime: number) =>
  encodeRequest({ op: 2, internalPort, suggestedExternalPort: suggested, lifetimeSeconds: lifetime })

describe("issue 10 §3: the daemon keeps a client's port across a lapse and a restart", () => {
  it('a lease that lapsed, then a crash and restart: the client gets its port back, another client does not', async () => {
    const t1 = await startTestDaemon({ lifetime_min_seconds: 60 })
    const p = (await t1.a.send(map(8080, 40000, 60))).externalPort!
    t1.peers.alive.add(KEY_A)
    t1.clock.advance(61_000) // lapses (the expiry timer runs)
    await new Promise((r) => setTimeout(r, 20))
    expect(t1.driver.dump()).toEqual([])
    t1.a.close()
    t1.b.close() // "kill -9": no close, no final snapshot; the journal holds the hold
    t = await startTestDaemon({ lifetime_min_seconds: 60 }, {}, { stateFile: t1.stateFile, wall: t1.wall })
    expect((await t.b.send(map(8081, p, 60))).externalPort).not.toBe(p)
    expect((await t.a.send(map(8080, 1, 60))).externalPort).toBe(p)
    expect(t.driver.dump()).toContain(`tcp/${p} -> ${A}:8080`)
    expect(t.driver.dump().some((l) => l.includes(B) && l.startsWith(`tcp/${p} `))).toBe(false)
  })
})

describe('issue 10 §3: a range full of held ports stays cheap to allocate from', () => {
  it('after one scan finds no unheld port, further requests take a held port without scanning again, until a port is freed', () => {
    const clock = new FakeClock(0)
    let checks = 0
    const t = new MappingTable({
      clock,
      minPort: 20000,
      maxPort: 21999,
      minLifetimeSeconds: 120,
      maxLifetimeSeconds: 7200,
      portHoldSeconds: 86400,
      isReserved: () => (checks++, false),
      random: () => 0.5,
    })
    // Client A fills the range and lets go of every port: all 2,000 are held for A.
    for (let p = 1; p <= 2000; p++)
      expect(t.map({ client: '10.8.0.2', protocol: 'tcp', internalPort: p, suggestedExternalPort: 0, lifetimeSeconds: 3600 }).ok).toBe(true)
    for (let p = 1; p <= 2000; p++) t.remove('10.8.0.2', 'tcp', p)
    const ask = (port: number) => t.map({ client: '10.8.0.3', protocol: 'tcp', internalPort: port, suggestedExternalPort: 0, lifetimeSeconds: 3600 })
    checks = 0
    expect(ask(1).ok).toBe(true) // B gets one of A's held ports: no other is free
    const first = checks
    expect(first).toBeGreaterThan(2000) // the one full scan
    checks = 0
    for (let i = 2; i <= 51; i++) expect(ask(i).ok).toBe(true)
    expect(checks / 50).toBeLessThan(200) // per request: no full scan any more
    // A port truly freed (B deletes one: it is held for B, so still not free for others) and a
    // lease whose hold is released (peer removed) make the next request scan again.
    t.releaseHolds('10.8.0.3')
    t.remove('10.8.0.3', 'tcp', 2)
    checks = 0
    expect(ask(60).ok).toBe(true)
    expect(checks).toBeLessThan(5000)
  })
})
