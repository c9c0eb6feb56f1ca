// Issue 10 §1: gluetun's keep-alive (internal X for a symmetric lease 0 -> X) got a second port;
// a request meeting the client's own static forward got a second, random port.
import { afterEach, describe, expect, it } from 'vitest'
import { FakeClock } from '../../../src/core/clock.js'
import { MappingTable, type MapRequest } from '../../../src/mappings/table.js'
import { PcpOpcode } from '../../../src/protocol/constants.js'
import { encodeRequest } from '../../../src/protocol/natpmp.js'
import { decodePcpResponse, encodePcpRequest } from '../../../src/protocol/pcp.js'
import { A, KEY_A, startTestDaemon, type TestDaemon } from '../../helpers/daemon.js'

const C = '10.8.0.2'
const D = '10.8.0.3'
function make() {
  const clock = new FakeClock(1_000)
  let seed = 11
  const random = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000
  return { clock, table: new MappingTable({ clock, minPort: 1024, maxPort: 65535, minLifetimeSeconds: 60, maxLifetimeSeconds: 7200, random }) }
}
const req = (over: Partial<MapRequest>): MapRequest => ({ client: C, protocol: 'udp', internalPort: 0, suggestedExternalPort: 1, lifetimeSeconds: 60, ...over })
function ok(t: MappingTable, r: MapRequest) {
  const o = t.map(r)
  if (!o.ok) throw new Error(`refused: ${o.reason}`)
  return o
}

describe('issue 10 §1, table: a symmetric lease is renewed by its external port', () => {
  it('internal X of the same client and protocol renews the lease 0 -> X (no second port, no kernel change)', () => {
    const { table, clock } = make()
    const first = ok(table, req({}))
    const x = first.lease.externalPort
    clock.advance(45_000)
    const again = ok(table, req({ internalPort: x, suggestedExternalPort: x }))
    expect(again.lease).toBe(first.lease)
    expect(again.lease.externalPort).toBe(x)
    expect(again.changes).toEqual([])
    expect(again.lease.expiresAt).toBe(clock.now() + 60_000)
    expect(table.size).toBe(1)
  })
  it('does not apply across protocols or clients', () => {
    const { table } = make()
    const x = ok(table, req({})).lease.externalPort
    const tcp = ok(table, req({ protocol: 'tcp', internalPort: x, suggestedExternalPort: x }))
    expect(tcp.changes).toHaveLength(1) // a new TCP lease (it may get port x: the port is the client's)
    const other = ok(table, req({ client: D, internalPort: x, suggestedExternalPort: x }))
    expect(other.lease.externalPort).not.toBe(x)
    expect(table.size).toBe(3)
  })
  it('a delete for internal X removes the symmetric lease 0 -> X', () => {
    const { table } = make()
    const x = ok(table, req({})).lease.externalPort
    const r = table.remove(C, 'udp', x)
    expect(r.removed).toHaveLength(1)
    expect(r.changes).toEqual([{ op: 'delete', forward: { protocol: 'udp', externalPort: x, internalAddress: C, internalPort: x } }])
    expect(table.size).toBe(0)
  })
})

describe("issue 10 §1, table: a request meets the client's own static forward", () => {
  it('internal P with a static forward E -> P gets E, the lifetime clamped, and stores nothing', () => {
    const { table } = make()
    expect(table.addStatic(C, 'tcp', 8443, 443).ok).toBe(true)
    const o = ok(table, req({ protocol: 'tcp', internalPort: 443, suggestedExternalPort: 0, lifetimeSeconds: 999_999 }))
    expect(o.lease.externalPort).toBe(8443)
    expect(o.lease.lifetimeSeconds).toBe(7200)
    expect(o.changes).toEqual([])
    expect(table.size).toBe(0)
    const del = table.remove(C, 'tcp', 443)
    expect(del.changes).toEqual([])
    expect(table.byExternal('tcp', 8443)?.origin).toBe('static')
  })
  it("only the static forward's own client and protocol meet it; removing the static forward ends it", () => {
    const { table } = make()
    table.addStatic(C, 'tcp', 8443, 443)
    expect(ok(table, req({ client: D, protocol: 'tcp', internalPort: 443 })).lease.externalPort).not.toBe(8443)
    expect(ok(table, req({ protocol: 'udp', internalPort: 443 })).changes).toHaveLength(1)
    table.removeStatic(C, 'tcp', 8443)
    expect(ok(table, req({ protocol: 'tcp', internalPort: 443 })).changes).toHaveLength(1)
  })
})

// --- black box: gluetun's exact sequence (docs/clients.md §2.2) over loopback UDP ----------------

let t: TestDaemon | null = null
afterEach(async () => {
  await t?.stop()
  t = null
})
const natpmp = (op: 1 | 2, internalPort: number, suggested: number, lifetime: number) =>
  encodeRequest({ op, internalPort, suggestedExternalPort: suggested, lifetimeSeconds: lifetime })

describe("issue 10 §1, daemon: gluetun's ProtonVPN port forwarder keeps its port", () => {
  it('first port 0/1/60 for UDP then TCP, then four keep-alives (internal X, external X) all answer X', async () => {
    t = await startTestDaemon({ lifetime_min_seconds: 60 })
    const addr = await t.a.send(encodeRequest({ op: 0 }))
    expect(addr.result).toBe(0)
    // 2. AddPortMapping(udp then tcp, internal 0, external 1, 60 s)
    const u = await t.a.send(natpmp(1, 0, 1, 60))
    const tc = await t.a.send(natpmp(2, 0, 1, 60))
    expect([u.result, tc.result]).toEqual([0, 0])
    expect(u.internalPort).toBe(0) // 4. internal echo
    expect(tc.internalPort).toBe(0)
    const x = u.externalPort!
    expect(tc.externalPort).toBe(x) // TCP == UDP
    expect(u.lifetimeSeconds).toBe(60)
    // 6. KeepPortForward: every 45 s, internal X, external X, UDP then TCP; any other answer is an error.
    for (let round = 0; round < 4; round++) {
      t.peers.alive.add(KEY_A)
      t.clock.advance(45_000)
      for (const op of [1, 2] as const) {
        const r = await t.a.send(natpmp(op, x, x, 60))
        expect({ result: r.result, internalPort: r.internalPort, externalPort: r.externalPort, lifetimeSeconds: r.lifetimeSeconds }).toEqual({
          result: 0,
          internalPort: x,
          externalPort: x,
          lifetimeSeconds: 60,
        })
      }
    }
    // Still one forward per protocol, both on X, after 180 s (three times the 60 s lifetime).
    expect(t.driver.dump()).toEqual([`tcp/${x} -> ${A}:${x}`, `udp/${x} -> ${A}:${x}`])
    expect(t.daemon.table!.size).toBe(2)
  })
  it('a PCP MAP for internal X renews the symmetric lease too (internal port echoed as sent)', async () => {
    t = await startTestDaemon({ lifetime_min_seconds: 60 })
    const x = (await t.a.send(natpmp(1, 0, 1, 60))).externalPort!
    const raw = await t.a.sendRaw(
      encodePcpRequest({
        opcode: PcpOpcode.Map,
        lifetimeSeconds: 60,
        clientAddress: A,
        map: { nonce: new Uint8Array(12).fill(7), protocol: 17, internalPort: x, suggestedExternalPort: x, suggestedExternalAddress: '0.0.0.0' },
      }),
    )
    const r = decodePcpResponse(raw!)!
    expect({ result: r.result, internalPort: r.map?.internalPort, externalPort: r.map?.assignedExternalPort }).toEqual({
      result: 0,
      internalPort: x,
      externalPort: x,
    })
    expect(t.daemon.table!.size).toBe(1)
  })
  it('a client with a static forward to its port P asking NAT-PMP for P gets the static port; a delete leaves it', async () => {
    t = await startTestDaemon({ static_forwards: { [KEY_A]: ['8443:443/tcp'] } })
    const r = await t.a.send(natpmp(2, 443, 0, 3600))
    expect({ result: r.result, internalPort: r.internalPort, externalPort: r.externalPort, lifetimeSeconds: r.lifetimeSeconds }).toEqual({
      result: 0,
      internalPort: 443,
      externalPort: 8443,
      lifetimeSeconds: 3600,
    })
    const del = await t.a.send(natpmp(2, 443, 0, 0))
    expect(del.result).toBe(0)
    expect(t.driver.dump()).toEqual([`tcp/8443 -> ${A}:443`])
  })
})
