import { afterEach, describe, expect, it } from 'vitest'
import { WgpmpError } from '../../../src/core/errors.js'
import { PcpOpcode, PcpOptionCode, PcpResult } from '../../../src/protocol/constants.js'
import { encodeRequest } from '../../../src/protocol/natpmp.js'
import { decodePcpResponse, encodePcpRequest, type PcpOption } from '../../../src/protocol/pcp.js'
import { ipv4ToMapped } from '../../../src/core/ip.js'
import { A, B, PUBLIC, startTestDaemon, type TestDaemon } from '../../helpers/daemon.js'
import type { TestClient } from '../../helpers/natpmp-client.js'

const NONCE = Uint8Array.from({ length: 12 }, (_, i) => i + 1)
let t: TestDaemon | null = null

async function start() {
  t = await startTestDaemon()
  return t
}
afterEach(async () => {
  await t?.stop()
  t = null
})

/** libtorrent's MAP request shape (see test/fixtures/packets/pcp/). */
const mapReq = (
  o: {
    client?: string
    protocol?: number
    internalPort?: number
    suggested?: number
    lifetime?: number
    nonce?: Uint8Array
    options?: PcpOption[]
    suggestedAddress?: string
  } = {},
) =>
  encodePcpRequest({
    opcode: PcpOpcode.Map,
    lifetimeSeconds: o.lifetime ?? 3600,
    clientAddress: o.client ?? A,
    map: {
      nonce: o.nonce ?? NONCE,
      protocol: o.protocol ?? 17,
      internalPort: o.internalPort ?? 6881,
      suggestedExternalPort: o.suggested ?? 6881,
      suggestedExternalAddress: o.suggestedAddress ?? '0.0.0.0',
    },
    ...(o.options ? { options: o.options } : {}),
  })

async function pcp(c: TestClient, bytes: Uint8Array) {
  const raw = await c.sendRaw(bytes)
  if (!raw) throw new Error('no reply')
  const r = decodePcpResponse(raw)
  if (!r) throw new Error(`not a PCP response: ${Buffer.from(raw).toString('hex')}`)
  return { ...r, length: raw.byteLength }
}

describe('PCP over UDP', () => {
  it("answers libtorrent's 60-byte MAP with the 60-byte reply it checks: nonce, protocol, ports, address", async () => {
    const { a, driver } = await start()
    const r = await pcp(a, mapReq())
    expect(r.length).toBe(60)
    expect(r).toMatchObject({ opcode: PcpOpcode.Map, result: 0, lifetimeSeconds: 3600 })
    expect(r.map).toMatchObject({ protocol: 17, internalPort: 6881, assignedExternalPort: 6881, assignedExternalAddress: PUBLIC })
    expect(r.map?.nonce).toEqual(NONCE)
    expect(driver.dump()).toEqual([`udp/6881 -> ${A}:6881`])
  })
  it('a PCP and a NAT-PMP request for the same key are one mapping', async () => {
    const { a, driver } = await start()
    const n = await a.send(encodeRequest({ op: 1, internalPort: 6881, suggestedExternalPort: 40000, lifetimeSeconds: 3600 }))
    const p = await pcp(a, mapReq({ suggested: 50000 }))
    expect(p.map?.assignedExternalPort).toBe(n.externalPort)
    expect(driver.dump()).toHaveLength(1)
  })
  it('clamps the lifetime like NAT-PMP', async () => {
    const { a } = await start()
    expect((await pcp(a, mapReq({ lifetime: 3_600_000 }))).lifetimeSeconds).toBe(7200)
  })
  it('refuses a renewal or delete with another nonce (NOT_AUTHORIZED), deletes with the right one', async () => {
    const { a, driver } = await start()
    await pcp(a, mapReq())
    const other = Uint8Array.from({ length: 12 }, () => 9)
    expect((await pcp(a, mapReq({ nonce: other }))).result).toBe(PcpResult.NotAuthorized)
    expect((await pcp(a, mapReq({ nonce: other, lifetime: 0 }))).result).toBe(PcpResult.NotAuthorized)
    expect(driver.dump()).toHaveLength(1)
    const del = await pcp(a, mapReq({ lifetime: 0 }))
    expect(del).toMatchObject({ result: 0, lifetimeSeconds: 0 })
    expect(driver.dump()).toEqual([])
  })
  it("protocol 0, port 0, lifetime 0 deletes all of the client's mappings", async () => {
    const { a, b, driver } = await start()
    await pcp(a, mapReq({ protocol: 6, internalPort: 1000 }))
    await pcp(a, mapReq({ protocol: 17, internalPort: 2000, nonce: Uint8Array.from({ length: 12 }, () => 7) }))
    await pcp(b, mapReq({ client: B, internalPort: 3000 }))
    expect((await pcp(a, mapReq({ protocol: 0, internalPort: 0, suggested: 0, lifetime: 0 }))).result).toBe(0)
    expect(driver.dump()).toEqual([`udp/3000 -> ${B}:3000`])
  })
  it('refuses THIRD_PARTY (a client maps only itself) and FILTER (not applied)', async () => {
    const { a, driver } = await start()
    const third: PcpOption = { code: PcpOptionCode.ThirdParty, data: ipv4ToMapped(B)! }
    const filter: PcpOption = { code: PcpOptionCode.Filter, data: Uint8Array.from([0, 128, 0, 0, ...ipv4ToMapped('0.0.0.0')!]) }
    const t = await pcp(a, mapReq({ options: [third] }))
    expect(t.result).toBe(PcpResult.NotAuthorized)
    expect(t.length).toBe(60 + 20)
    expect((await pcp(a, mapReq({ options: [filter] }))).result).toBe(PcpResult.UnsuppOption)
    expect(driver.dump()).toEqual([])
  })
  it('PREFER_FAILURE: the suggested port or CANNOT_PROVIDE_EXTERNAL', async () => {
    const { a, b } = await start()
    await pcp(b, mapReq({ client: B, suggested: 40000 }))
    const pf: PcpOption = { code: PcpOptionCode.PreferFailure, data: new Uint8Array(0) }
    expect((await pcp(a, mapReq({ suggested: 40000, options: [pf] }))).result).toBe(PcpResult.CannotProvideExternal)
    expect((await pcp(a, mapReq({ suggested: 40001, options: [pf] }))).map?.assignedExternalPort).toBe(40001)
  })
  it('refuses a client address that is not the source (ADDRESS_MISMATCH) and other protocols (UNSUPP_PROTOCOL)', async () => {
    const { a } = await start()
    expect((await pcp(a, mapReq({ client: B }))).result).toBe(PcpResult.AddressMismatch)
    expect((await pcp(a, mapReq({ protocol: 132 }))).result).toBe(PcpResult.UnsuppProtocol)
  })
  it('answers ANNOUNCE with success and the epoch; PEER with UNSUPP_OPCODE', async () => {
    const { a, clock } = await start()
    clock.advance(7_000)
    expect(await pcp(a, encodePcpRequest({ opcode: PcpOpcode.Announce, lifetimeSeconds: 0, clientAddress: A }))).toMatchObject({
      opcode: 0,
      result: 0,
      epochSeconds: 7,
      length: 24,
    })
    const peer = encodePcpRequest({
      opcode: PcpOpcode.Peer,
      lifetimeSeconds: 60,
      clientAddress: A,
      peer: {
        nonce: NONCE,
        protocol: 6,
        internalPort: 1,
        suggestedExternalPort: 0,
        suggestedExternalAddress: '0.0.0.0',
        remotePeerPort: 80,
        remotePeerAddress: '203.0.113.9',
      },
    })
    expect((await pcp(a, peer)).result).toBe(PcpResult.UnsuppOpcode)
  })
  it('answers PCP version 1 with UNSUPP_VERSION so the client can adapt', async () => {
    const { a } = await start()
    const v1 = mapReq()
    v1[0] = 1
    expect((await pcp(a, v1)).result).toBe(PcpResult.UnsuppVersion)
  })
  it('NETWORK_FAILURE when the kernel refuses, and nothing is kept', async () => {
    const { a, driver } = await start()
    driver.failNext = new WgpmpError('WGPMP_KERNEL_REFUSED', 'boom')
    expect((await pcp(a, mapReq())).result).toBe(PcpResult.NetworkFailure)
    expect(t!.daemon.table!.size).toBe(0)
  })
})

describe('PCP over IPv6', () => {
  it('a global IPv6 client gets a pinhole on its own address and port; NAT-PMP over IPv6 gets nothing', async () => {
    const { peer, KEY_A, startTestDaemon: start6 } = await import('../../helpers/daemon.js')
    const { TestClient } = await import('../../helpers/natpmp-client.js')
    const d = await start6({ wg_address_v6: 'fd42:42::1/64' }, { publicAddressV6: '2001:db8:100::1', listenV6: { host: '::1', port: 0 } })
    t = d
    d.peers.list = [...d.peers.list, { ...peer(KEY_A.replace('q', 'Q'), '127.0.0.9', Math.floor(d.wall.t / 1000)), allowedIps: ['::1/128'] }]
    await d.daemon.refreshPeers()
    const c6 = await TestClient.open('::1', d.daemon.udpAddressV6!, 'udp6')
    try {
      const r = await pcp(c6, mapReq({ client: '::1', suggested: 40000 }))
      expect(r).toMatchObject({ result: 0, lifetimeSeconds: 3600 })
      expect(r.map).toMatchObject({ internalPort: 6881, assignedExternalPort: 6881, assignedExternalAddress: '::1' })
      expect(d.driver.dump()).toEqual(['pin/::1/udp/6881 -> ::1:6881'])
      expect(await c6.sendRaw(encodeRequest({ op: 0 }), 200)).toBeNull()
    } finally {
      c6.close()
    }
  })
})
