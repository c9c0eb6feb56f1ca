import { createSocket } from 'node:dgram'
import { readFile } from 'node:fs/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { MEMORY_CAPABILITIES } from '../../../src/drivers/memory.js'
const DELETE_CHUNK = MEMORY_CAPABILITIES.bulkDeleteChunk
import { MemoryDriver } from '../../../src/drivers/memory.js'
import { EXPIRY_CHUNK } from '../../../src/mappings/expiry.js'
import { WgpmpError } from '../../../src/core/errors.js'
import { ResultCode } from '../../../src/protocol/constants.js'
import { encodeRequest } from '../../../src/protocol/natpmp.js'
import { A, B, KEY_A, KEY_B, peer, startTestDaemon, type TestDaemon } from '../../helpers/daemon.js'
import { TestClient } from '../../helpers/natpmp-client.js'

const map = (op: 1 | 2, internalPort: number, suggestedExternalPort: number, lifetimeSeconds: number): Uint8Array =>
  encodeRequest({ op, internalPort, suggestedExternalPort, lifetimeSeconds })
const running: TestDaemon[] = []
const clients: TestClient[] = []
async function start(...args: Parameters<typeof startTestDaemon>): Promise<TestDaemon> {
  const t = await startTestDaemon(...args)
  running.push(t)
  return t
}
afterEach(async () => {
  for (const c of clients.splice(0)) c.close()
  for (const t of running.splice(0)) await t.stop()
})

describe('clients are WireGuard peers', () => {
  it('a source inside the prefix that is no peer gets result 2', async () => {
    const t = await start()
    const stranger = await TestClient.open('127.0.0.5', t.daemon.udpAddress!)
    clients.push(stranger)
    expect((await stranger.send(map(2, 80, 0, 60))).result).toBe(ResultCode.NotAuthorized)
  })
  it('a peer added a moment ago is served at once (its first request triggers a refresh)', async () => {
    const t = await start()
    t.peers.list.push(peer('2xJf0YkQ2g6jWkV7Qe4rj3Xq1oYcF5uVd0sR8nT4m1E=', '127.0.0.6', Math.floor(t.wall.t / 1000)))
    t.clock.advance(1_000) // past the on-demand refresh's minimum spacing
    const fresh = await TestClient.open('127.0.0.6', t.daemon.udpAddress!)
    clients.push(fresh)
    expect((await fresh.send(map(2, 80, 0, 60))).result).toBe(0)
  })
  it('a removed peer loses every forward, static ones included; they come back with it', async () => {
    const t = await start({ static_forwards: { [KEY_B]: ['8080:80/tcp'] } })
    const l = await t.b.send(map(1, 51413, 0, 3600))
    expect(t.driver.dump()).toEqual([`tcp/8080 -> ${B}:80`, `udp/${l.externalPort} -> ${B}:51413`])
    const saved = t.peers.list
    t.peers.list = saved.filter((p) => p.publicKey !== KEY_B)
    await t.daemon.refreshPeers()
    expect(t.driver.dump()).toEqual([])
    t.peers.list = saved
    await t.daemon.refreshPeers()
    expect(t.driver.dump()).toEqual([`tcp/8080 -> ${B}:80`])
  })
  it('a disconnected peer loses its NAT-PMP forwards and keeps its static ones', async () => {
    const t = await start({ peer_disconnect_seconds: 300, static_forwards: { [KEY_A]: ['27015-27016/udp'] } })
    await t.a.send(map(2, 8080, 30000, 3600))
    await t.b.send(map(2, 8080, 30001, 3600))
    // B keeps handshaking; A goes quiet for longer than peer_disconnect_seconds (the refresh timer runs meanwhile).
    t.peers.alive.add(KEY_B)
    t.clock.advance(299_000)
    await t.daemon.refreshPeers()
    expect(t.driver.dump()).toHaveLength(4)
    t.clock.advance(2_000)
    await t.daemon.refreshPeers()
    expect(t.driver.dump()).toEqual([`tcp/30001 -> ${B}:8080`, `udp/27015 -> ${A}:27015`, `udp/27016 -> ${A}:27016`])
  })
})

describe('restarts and crashes', () => {
  it('a start-up without a working driver fails with a clear message and leaves nothing running', async () => {
    const { NftDriver } = await import('../../../src/drivers/nft.js')
    const { systemExec } = await import('../../../src/core/exec.js')
    const driver = new NftDriver({ exec: systemExec, mode: 'spawn', nftArgv: ['/nonexistent/nft'] })
    await expect(startTestDaemon({}, { driver })).rejects.toThrow(/command not found \(install it/)
  })

  it('leases, the epoch and API-created static forwards survive a restart; expired leases do not', async () => {
    const t = await start({ lifetime_min_seconds: 120 })
    await t.a.send(map(2, 8080, 30000, 3600))
    await t.a.send(map(1, 9000, 30001, 120))
    t.clock.advance(60_000)
    t.wall.t += 60_000
    await t.stop() // SIGTERM: forwards leave the kernel, state stays
    running.splice(0)
    expect(t.driver.dump()).toEqual([])
    const doc = JSON.parse(await readFile(t.stateFile, 'utf8')) as { leases: unknown[] }
    expect(doc.leases).toHaveLength(2)
    t.wall.t += 90_000 // down for 90 s: the 120 s lease lapsed meanwhile
    const u = await start({ lifetime_min_seconds: 120 }, {}, { stateFile: t.stateFile, driver: t.driver, wall: t.wall })
    expect(t.driver.dump()).toEqual([`tcp/30000 -> ${A}:8080`])
    const again = await u.a.send(map(2, 8080, 0, 3600))
    expect(again.externalPort).toBe(30000) // same port on renewal after the restart
    expect(again.epochSeconds).toBe(150) // 60 s before + 90 s down: the epoch kept counting
  })
  it('after a crash the kernel is reconciled with the state file: no stale forward stays', async () => {
    const t = await start()
    await t.a.send(map(2, 8080, 30000, 3600))
    await t.a.send(map(2, 8081, 30002, 3600))
    await t.a.send(map(2, 8081, 0, 0)) // deleted before the "crash"
    await t.stop({ teardown: false }) // the kernel keeps the table, as after SIGKILL
    running.splice(0)
    await t.driver.apply([{ op: 'add', forward: { protocol: 'udp', externalPort: 31000, internalAddress: B, internalPort: 1 } }]) // stale
    await start({}, {}, { stateFile: t.stateFile, driver: t.driver, wall: t.wall })
    expect(t.driver.dump()).toEqual([`tcp/30000 -> ${A}:8080`])
  })
  it('an operator flush removes every lease and keeps static forwards', async () => {
    const t = await start({ static_forwards: { [KEY_A]: ['443/tcp'] } })
    await t.a.send(map(2, 8080, 30000, 3600))
    await t.b.send(map(1, 9000, 30001, 3600))
    expect(await t.daemon.flushLeases()).toBe(2)
    expect(t.driver.dump()).toEqual([`tcp/443 -> ${A}:443`])
  })
  it('a corrupt state file is moved aside and the daemon starts empty', async () => {
    const t = await start()
    await t.stop()
    running.splice(0)
    const { writeFile, readdir } = await import('node:fs/promises')
    await writeFile(t.stateFile, '{ not json')
    const u = await start({}, {}, { stateFile: t.stateFile, driver: new MemoryDriver(), wall: t.wall })
    expect(u.daemon.table!.size).toBe(0)
    const dir = t.stateFile.slice(0, t.stateFile.lastIndexOf('/'))
    expect((await readdir(dir)).some((f) => f.startsWith('state.json.corrupt-'))).toBe(true)
  })
})

describe('hostile or broken clients', () => {
  it('a client flooding 5351 is cut off at its limit while another maps normally', async () => {
    const t = await start({ rate_limit_per_second: 20, rate_limit_burst: 40 })
    const flooder = createSocket('udp4')
    await new Promise<void>((r) => flooder.bind(0, A, r))
    let answered = 0
    flooder.on('message', () => answered++)
    const server = t.daemon.udpAddress!
    const bReplies: number[] = []
    // 1,000 requests in bursts of 50 (paced so the kernel's socket buffer, not the limiter, is never the bottleneck).
    for (let i = 0; i < 20; i++) {
      for (let j = 0; j < 50; j++) flooder.send(encodeRequest({ op: 0 }), server.port, server.address)
      if (i % 5 === 0) bReplies.push((await t.b.send(map(2, 8080 + i, 0, 3600))).result)
      await new Promise((r) => setTimeout(r, 2))
    }
    await new Promise((r) => setTimeout(r, 100))
    flooder.close()
    expect(bReplies).toEqual([0, 0, 0, 0])
    expect(answered).toBe(40) // the burst; the fake clock does not move, so nothing refills
  })
  it('never grants a port the host listens on, nor the API port', async () => {
    const t = await start({ api_listen: '127.0.0.1:5352' }, { listeningPorts: () => Promise.resolve({ tcp: new Set([8443]), udp: new Set() }) })
    expect((await t.a.send(map(2, 8443, 8443, 3600))).externalPort).not.toBe(8443)
    expect((await t.a.send(map(1, 8443, 8443, 3600))).externalPort).not.toBe(8443) // a port number is withheld for both protocols
    expect((await t.a.send(map(2, 51820, 51820, 3600))).externalPort).not.toBe(51820)
  })
})

describe('large removals and slow kernels', () => {
  /** Maps n TCP ports for client a, one request at a time. */
  async function mapMany(t: TestDaemon, n: number, lifetime: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      const r = await t.a.send(map(2, 2000 + i, 0, lifetime))
      if (r.result !== 0) throw new Error(`map ${i}: result ${r.result}`)
    }
  }
  const chunks = (n: number, size: number): number[] => Array.from({ length: Math.ceil(n / size) }, (_, i) => Math.min(size, n - i * size))
  it('leases due at the same moment leave in chunks (EXPIRY_CHUNK), all of them', async () => {
    const t = await start({ max_forwards_per_client: 5000, lifetime_min_seconds: 120, rate_limit_burst: 100000, rate_limit_per_second: 100000 })
    await mapMany(t, 1_200, 120)
    expect(t.driver.dump()).toHaveLength(1_200)
    const before = t.driver.sizes.length
    t.clock.advance(121_000) // one timer: the rounds follow each other without another tick of the clock
    for (let i = 0; i < 100 && t.driver.dump().length > 0; i++) await new Promise((r) => setTimeout(r, 10))
    expect(t.driver.dump()).toEqual([])
    const rounds = t.driver.sizes.slice(before)
    expect(rounds).toEqual(chunks(1_200, EXPIRY_CHUNK))
  })
  it('a request that arrives during a mass expiry is committed right after the chunk in flight, before the next one', async () => {
    const t = await start({ max_forwards_per_client: 5000, lifetime_min_seconds: 120, rate_limit_burst: 100000, rate_limit_per_second: 100000 })
    await mapMany(t, 1_000, 120)
    const before = t.driver.sizes.length
    let open!: () => void
    t.driver.gate = new Promise<void>((r) => (open = r))
    t.clock.advance(121_000) // the first chunk of deletes is now held at the gate
    await new Promise((r) => setTimeout(r, 30))
    const b = t.b.send(map(2, 9000, 0, 7200), 3000)
    await new Promise((r) => setTimeout(r, 30))
    t.driver.gate = null
    open()
    expect((await b).result).toBe(0)
    for (let i = 0; i < 100 && t.driver.dump().length > 1; i++) await new Promise((r) => setTimeout(r, 10))
    expect(t.driver.dump()).toHaveLength(1)
    // Batches: the held chunk, B's forward, then the rest of the expiry.
    expect(t.driver.sizes.slice(before)).toEqual([EXPIRY_CHUNK, 1, ...chunks(1_000 - EXPIRY_CHUNK, EXPIRY_CHUNK)])
  })
  it('a delete-all of 1,200 goes in rounds; if one is refused the answer is 3 and table and kernel still agree', async () => {
    const t = await start({ max_forwards_per_client: 5000, rate_limit_burst: 100000, rate_limit_per_second: 100000 })
    await mapMany(t, 1_200, 3600)
    t.driver.failAt = { n: 2, error: new WgpmpError('WGPMP_KERNEL_REFUSED', 'refused') }
    expect((await t.a.send(map(2, 0, 0, 0))).result).toBe(ResultCode.NetworkFailure)
    // The first round is done, the refused one undone: both sides hold the same 950.
    expect(t.driver.dump()).toHaveLength(1_200 - DELETE_CHUNK)
    expect(t.daemon.table!.size).toBe(1_200 - DELETE_CHUNK)
    const before = t.driver.sizes.length
    expect((await t.a.send(map(2, 0, 0, 0))).result).toBe(0)
    expect(t.driver.dump()).toEqual([])
    expect(t.driver.sizes.slice(before)).toEqual(chunks(1_200 - DELETE_CHUNK, DELETE_CHUNK))
  })
  it('a port freed by a delete-all is not handed out before its old forward left the kernel', async () => {
    const t = await start({
      max_forwards_per_client: 5000,
      rate_limit_burst: 100000,
      rate_limit_per_second: 100000,
      port_forward_min_port: 30000,
      port_forward_max_port: 31199,
    })
    await mapMany(t, 1_200, 3600) // every port of the range is A's
    let open!: () => void
    t.driver.gate = new Promise<void>((r) => (open = r))
    const all = t.a.send(map(2, 0, 0, 0), 3000)
    await new Promise((r) => setTimeout(r, 30))
    // While the first round is in flight only its ports are free; B gets one of them or result 4, never a clash.
    const b = t.b.send(map(2, 9000, 0, 3600), 3000)
    t.driver.gate = null
    open()
    expect((await all).result).toBe(0)
    const rb = await b
    expect([0, ResultCode.OutOfResources]).toContain(rb.result)
    if (rb.result === 0) expect(t.driver.dump()).toEqual([`tcp/${rb.externalPort} -> ${B}:9000`])
  })
  it('a retransmit of a request whose forward is still being committed waits for it: no reply precedes its rule', async () => {
    const t = await start()
    let open!: () => void
    t.driver.gate = new Promise<void>((r) => (open = r))
    const first = t.a.send(map(2, 8080, 30000, 3600), 2000)
    await new Promise((r) => setTimeout(r, 30))
    const retransmit = t.a.sendRaw(map(2, 8080, 30000, 3600), 150)
    expect(await retransmit).toBeNull() // no answer while the kernel has not taken it
    expect(t.driver.dump()).toEqual([])
    t.driver.gate = null
    open()
    expect((await first).externalPort).toBe(30000)
    expect(t.driver.dump()).toEqual([`tcp/30000 -> ${A}:8080`])
  })
  it('a retransmitted delete is not answered before the first one is committed', async () => {
    const t = await start()
    await t.a.send(map(2, 8080, 30000, 3600))
    let open!: () => void
    t.driver.gate = new Promise<void>((r) => (open = r))
    const first = t.a.send(map(2, 0, 0, 0), 2000)
    await new Promise((r) => setTimeout(r, 30))
    expect(await t.a.sendRaw(map(2, 0, 0, 0), 150)).toBeNull() // the table is already empty, the kernel is not
    t.driver.gate = null
    open()
    expect((await first).result).toBe(0)
    expect(t.driver.dump()).toEqual([])
  })
})
