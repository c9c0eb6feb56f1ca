// Issue 10 §4: leases were restored by address only (a new peer on a removed peer's address
// inherited its forwards), outside a narrowed range and with an old lifetime; an interface
// restart (handshake times back to 0) withdrew every lease; a missing interface logged a stack
// trace every 2 s.
import { Writable } from 'node:stream'
import { afterEach, describe, expect, it } from 'vitest'
import { createLogger } from '../../../src/log.js'
import { FakeClock } from '../../../src/core/clock.js'
import { encodeRequest } from '../../../src/protocol/natpmp.js'
import { PeerSync } from '../../../src/wireguard/peer-sync.js'
import { PeerTracker } from '../../../src/wireguard/peers.js'
import { A, B, FakePeers, KEY_A, peer, startTestDaemon, type TestDaemon } from '../../helpers/daemon.js'

const KEY_C = '2xJf0YkQ2g6jWkV7Qe4rj3Xq1oYcF5uVd0sR8nT4m1E='
const running: TestDaemon[] = []
afterEach(async () => {
  for (const t of running.splice(0)) await t.stop().catch(() => {})
})
const map = (internalPort: number, suggested: number, lifetime: number) =>
  encodeRequest({ op: 2, internalPort, suggestedExternalPort: suggested, lifetimeSeconds: lifetime })
function sink() {
  const lines: Record<string, unknown>[] = []
  const log = createLogger(
    'debug',
    new Writable({
      write(chunk: Buffer, _e, cb) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>)
        cb()
      },
    }),
  )
  return { lines, log }
}
/** Crash (no close) and restart on the same state, with `over` config and the peers set by `peers`. */
async function crashAndRestart(t: TestDaemon, over: Parameters<typeof startTestDaemon>[0], peers?: (p: FakePeers) => void, log = sink()) {
  t.a.close()
  t.b.close()
  running.splice(running.indexOf(t), 1)
  const fake = new FakePeers(() => t.wall.t)
  peers?.(fake)
  const deps = peers ? { peers: fake } : {}
  const t2 = await startTestDaemon(over, { ...deps, log: log.log }, { stateFile: t.stateFile, wall: t.wall })
  running.push(t2)
  return { t2, lines: log.lines }
}

describe('issue 10 §4: restored leases belong to the same peer', () => {
  it("a new peer (another key) on the removed peer's address does not inherit its leases; the log says why", async () => {
    const t = await startTestDaemon()
    running.push(t)
    const p = (await t.b.send(map(8080, 40000, 3600))).externalPort!
    const { t2, lines } = await crashAndRestart(t, {}, (ps) => {
      ps.list = [peer(KEY_A, A, Math.floor(t.wall.t / 1000)), peer(KEY_C, B, Math.floor(t.wall.t / 1000))]
    })
    expect(t2.driver.dump()).toEqual([])
    const warn = lines.find((l) => l.msg === 'saved leases not restored')
    expect(warn).toMatchObject({ dropped: { 'other-peer': 1 } })
    expect(String((warn!.examples as string[])[0])).toContain(`tcp/${p}: the address now belongs to another peer`)
  })
  it('the same peer on the same address gets its lease back', async () => {
    const t = await startTestDaemon()
    running.push(t)
    const p = (await t.b.send(map(8080, 40000, 3600))).externalPort!
    const { t2 } = await crashAndRestart(t, {})
    expect(t2.driver.dump()).toEqual([`tcp/${p} -> ${B}:8080`])
  })
})

describe('issue 10 §4: restored leases obey the current limits', () => {
  it('a lease outside a narrowed range is dropped with the reason; a longer lifetime than the new maximum is clamped', async () => {
    const t = await startTestDaemon()
    running.push(t)
    await t.a.send(map(8080, 40000, 7200))
    await t.b.send(map(8080, 3000, 7200))
    const { t2, lines } = await crashAndRestart(t, { port_forward_min_port: 2000, port_forward_max_port: 5000, lifetime_max_seconds: 600 })
    expect(t2.driver.dump()).toEqual([`tcp/3000 -> ${B}:8080`])
    expect(lines.find((l) => l.msg === 'saved leases not restored')).toMatchObject({ dropped: { 'out-of-range': 1 } })
    expect(lines.find((l) => l.msg === 'leases restored')).toMatchObject({ restored: 1, reclamped: 1 })
    const lease = t2.daemon.table!.leases()[0]!
    expect(lease.lifetimeSeconds).toBe(600)
    expect(t2.daemon.table!.secondsLeft(lease)).toBeLessThanOrEqual(600)
  })
})

describe('issue 10 §4: an interface restart is not a disconnection', () => {
  it('PeerTracker: handshake 0 after a handshake keeps the peer connected until its age passes the limit', () => {
    const clock = new FakeClock(0, 1_000_000_000) // wall: unix 1,000,000 s, moving with the clock
    const tr = new PeerTracker({ clock, disconnectSeconds: 300 })
    tr.update([peer(KEY_A, A, 1_000_000)])
    clock.advance(10_000)
    expect(tr.update([peer(KEY_A, A, 0)])).toEqual([])
    expect(tr.peerByAddress(A)?.connected).toBe(true)
    clock.advance(291_000)
    expect(tr.update([peer(KEY_A, A, 0)]).map((e) => e.type)).toEqual(['disconnected'])
  })
  it('the daemon keeps every lease when all handshake times go back to 0', async () => {
    const t = await startTestDaemon()
    running.push(t)
    const pa = (await t.a.send(map(8080, 40000, 3600))).externalPort!
    const pb = (await t.b.send(map(8081, 40001, 3600))).externalPort!
    t.peers.list = t.peers.list.map((p) => ({ ...p, latestHandshake: 0 }))
    await t.daemon.refreshPeers()
    expect(t.driver.dump()).toEqual([`tcp/${pa} -> ${A}:8080`, `tcp/${pb} -> ${B}:8081`])
  })
  it('a missing interface is said once, not at every refresh; its return is said too', async () => {
    const clock = new FakeClock(0)
    const { lines, log } = sink()
    let fail = true
    const sync = new PeerSync({
      source: {
        refresh: () =>
          fail ? Promise.reject(new Error('wg show wg0 dump: exit 1: Unable to access interface: No such device')) : Promise.resolve([peer(KEY_A, A, 1)]),
      },
      tracker: new PeerTracker({ clock }),
      clock,
      intervalMs: 2000,
      onEvents: () => Promise.resolve(),
      log,
    })
    for (let i = 0; i < 10; i++) await sync.refresh()
    fail = false
    await sync.refresh()
    const msgs = lines.filter((l) => (l.level as number) >= 30).map((l) => l.msg)
    expect(msgs).toEqual(['cannot read WireGuard peers (interface gone?); keeping the last known ones and their forwards', 'WireGuard peers readable again'])
    expect(lines.some((l) => 'err' in l)).toBe(false)
  })
})
