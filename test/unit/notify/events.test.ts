/** The events seam: the real daemon (memory driver, fake clock) emits one event per forward change, none for renewals. */
import { afterEach, describe, expect, it } from 'vitest'
import type { WgpmpEvent } from '../../../src/notify/events.js'
import { describeEvent } from '../../../src/notify/events.js'
import { encodeRequest } from '../../../src/protocol/natpmp.js'
import { A, KEY_A, KEY_B, PUBLIC, startTestDaemon, type TestDaemon } from '../../helpers/daemon.js'

const map = (op: 1 | 2, internalPort: number, suggestedExternalPort: number, lifetimeSeconds: number): Uint8Array =>
  encodeRequest({ op, internalPort, suggestedExternalPort, lifetimeSeconds })
const running: TestDaemon[] = []
afterEach(async () => {
  for (const t of running.splice(0)) await t.stop()
})

async function start(over: Parameters<typeof startTestDaemon>[0] = {}): Promise<{ t: TestDaemon; got: WgpmpEvent[] }> {
  const got: WgpmpEvent[] = []
  const t = await startTestDaemon({ clients: { [KEY_A]: { name: 'laptop' } }, lifetime_min_seconds: 2, ...over }, { events: { emit: (e) => got.push(e) } })
  running.push(t)
  return { t, got }
}
const short = (e: WgpmpEvent): string =>
  `${e.type}${e.reason ? ':' + e.reason : ''} ${e.client_name ?? e.client_id} ${e.protocol ?? ''}/${e.external_port ?? ''}`
const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 20))

describe('forward and client events', () => {
  it('a NAT-PMP map is forward.created with every field; a renewal is no event; a delete is forward.removed (deleted)', async () => {
    const { t, got } = await start()
    const r = await t.a.send(map(2, 8080, 30000, 3600))
    expect(got).toHaveLength(1)
    expect(got[0]).toMatchObject({
      type: 'forward.created',
      client_name: 'laptop',
      client_address: A,
      protocol: 'tcp',
      public_address: PUBLIC,
      external_port: r.externalPort,
      internal_port: 8080,
      origin: 'nat-pmp',
      lifetime_seconds: 3600,
    })
    expect(got[0]!.client_id).toMatch(/^[A-Za-z0-9_-]+$/)
    expect(describeEvent(got[0]!)).toBe(`forward created: laptop (${A}) tcp ${PUBLIC}:${r.externalPort} -> ${A}:8080, NAT-PMP, 3600 s`)
    await t.a.send(map(2, 8080, 30000, 3600)) // renewal
    expect(got).toHaveLength(1)
    await t.a.send(map(2, 8080, 0, 0))
    expect(got.map(short)).toEqual([`forward.created laptop tcp/${r.externalPort}`, `forward.removed:deleted laptop tcp/${r.externalPort}`])
  })

  it('a lease that runs out is forward.removed (expired)', async () => {
    const { t, got } = await start()
    const r = await t.b.send(map(1, 51413, 0, 2))
    t.clock.advance(2_500)
    await tick()
    expect(got.map(short)).toEqual([
      `forward.created ${got[0]!.client_id} udp/${r.externalPort}`,
      `forward.removed:expired ${got[0]!.client_id} udp/${r.externalPort}`,
    ])
    expect(got[1]!.client_name).toBeNull() // B has no name
  })

  it("the operator's flush is forward.removed (flushed) for every lease", async () => {
    const { t, got } = await start()
    await t.a.send(map(2, 8080, 30000, 3600))
    await t.b.send(map(2, 8080, 30001, 3600))
    expect(await t.daemon.flushLeases()).toBe(2)
    expect(
      got
        .filter((e) => e.reason === 'flushed')
        .map((e) => e.external_port)
        .sort(),
    ).toEqual([30000, 30001])
  })

  it('a removed peer: its leases and static ports go (peer-removed), it disconnects; back, its static ports are created again', async () => {
    const { t, got } = await start({ static_forwards: { [KEY_A]: ['27015-27016/udp'] } })
    expect(got).toEqual([]) // the start installed the static forward: not news
    await t.a.send(map(2, 8080, 30000, 3600))
    const saved = t.peers.list
    t.peers.list = saved.filter((p) => p.publicKey !== KEY_A)
    await t.daemon.refreshPeers()
    expect(got.slice(1).map(short).sort()).toEqual([
      'client.disconnected laptop /',
      'forward.removed:peer-removed laptop tcp/30000',
      'forward.removed:peer-removed laptop udp/27015',
      'forward.removed:peer-removed laptop udp/27016',
    ])
    got.length = 0
    t.peers.list = saved
    await t.daemon.refreshPeers()
    expect(got.map(short).sort()).toEqual(['client.connected laptop /', 'forward.created laptop udp/27015', 'forward.created laptop udp/27016'])
    expect(got.find((e) => e.type === 'forward.created')).toMatchObject({ origin: 'static', lifetime_seconds: null, internal_port: 27015 })
  })

  it('a peer that stops handshaking: its leases go (peer-disconnected) and client.disconnected', async () => {
    const { t, got } = await start({ peer_disconnect_seconds: 300 })
    await t.a.send(map(2, 8080, 30000, 3600))
    t.peers.alive.add(KEY_B)
    t.clock.advance(299_000)
    await t.daemon.refreshPeers()
    expect(got).toHaveLength(1)
    t.clock.advance(2_000)
    await t.daemon.refreshPeers()
    expect(got.slice(1).map(short).sort()).toEqual(['client.disconnected laptop /', 'forward.removed:peer-disconnected laptop tcp/30000'])
  })

  it('a sink that throws never breaks a request', async () => {
    const t = await startTestDaemon(
      {},
      {
        events: {
          emit: () => {
            throw new Error('boom')
          },
        },
      },
    )
    running.push(t)
    const r = await t.a.send(map(2, 8080, 30000, 3600))
    expect(r.result).toBe(0)
    expect(t.driver.dump()).toEqual([`tcp/30000 -> ${A}:8080`])
  })
})

describe('lease log lines', () => {
  it("name the client (address, id, name); renewals are at debug; peer lines keep the logger's name", async () => {
    const { PassThrough } = await import('node:stream')
    const { createLogger } = await import('../../../src/log.js')
    const out = new PassThrough()
    const lines: Record<string, unknown>[] = []
    out.on('data', (c: Buffer) => {
      for (const l of c.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>)
    })
    const t = await startTestDaemon({ clients: { [KEY_A]: { name: 'laptop' } } }, { log: createLogger('debug', out) })
    running.push(t)
    await t.a.send(map(2, 8080, 30000, 3600))
    await t.a.send(map(2, 8080, 30000, 3600))
    await new Promise((r) => setTimeout(r, 20))
    expect(lines.find((l) => l.msg === 'lease created')).toMatchObject({
      level: 30,
      client: A,
      clientName: 'laptop',
      clientId: expect.stringMatching(/^[A-Za-z0-9_-]+$/) as unknown,
      externalPort: 30000,
    })
    expect(lines.find((l) => l.msg === 'lease renewed')).toMatchObject({ level: 20, clientName: 'laptop' })
    const peerLines = lines.filter((l) => String(l.msg).startsWith('peer '))
    expect(peerLines.length).toBeGreaterThan(0)
    expect(peerLines.every((l) => l.name === 'wgpmp')).toBe(true)
    expect(peerLines.some((l) => l.clientName === 'laptop')).toBe(true)
  })
})
