import { describe, expect, it } from 'vitest'
import { FakeClock } from '../../../src/core/clock.js'
import { MappingTable, type MapRequest } from '../../../src/mappings/table.js'

const A = '10.8.0.2'
const B = '10.8.0.3'

function make(over: Partial<ConstructorParameters<typeof MappingTable>[0]> = {}) {
  const clock = new FakeClock(1_000)
  let seed = 7
  const random = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000
  const table = new MappingTable({ clock, minPort: 1024, maxPort: 65535, minLifetimeSeconds: 120, maxLifetimeSeconds: 7200, random, ...over })
  return { clock, table }
}
const req = (over: Partial<MapRequest> = {}): MapRequest => ({
  client: A,
  protocol: 'tcp',
  internalPort: 8080,
  suggestedExternalPort: 0,
  lifetimeSeconds: 3600,
  ...over,
})
function mapOk(t: MappingTable, r: MapRequest) {
  const o = t.map(r)
  if (!o.ok) throw new Error(`map refused: ${o.reason}`)
  return o
}

describe('MappingTable', () => {
  it('uses the suggested port when free, and emits one add', () => {
    const { table } = make()
    const o = mapOk(table, req({ suggestedExternalPort: 40000 }))
    expect(o.lease.externalPort).toBe(40000)
    expect(o.changes).toEqual([{ op: 'add', forward: { protocol: 'tcp', externalPort: 40000, internalAddress: A, internalPort: 8080 } }])
  })
  it('renewal returns the same external port, extends the lease and changes nothing in the kernel', () => {
    const { table, clock } = make()
    const first = mapOk(table, req({ suggestedExternalPort: 40000 }))
    clock.advance(3000_000)
    const again = mapOk(table, req({ suggestedExternalPort: 50000 }))
    expect(again.lease.externalPort).toBe(40000)
    expect(again.changes).toEqual([])
    expect(again.lease.expiresAt).toBe(clock.now() + 3600_000)
    expect(first.lease).toBe(again.lease)
  })
  it('treats an unusable hint as a hint: out of range, reserved, or taken by another client', () => {
    const { table } = make({ isReserved: (p) => p === 51820 })
    expect(mapOk(table, req({ suggestedExternalPort: 1 })).lease.externalPort).toBeGreaterThanOrEqual(1024)
    const reserved = mapOk(table, req({ internalPort: 51820, suggestedExternalPort: 51820 })).lease.externalPort
    expect(reserved).not.toBe(51820)
    mapOk(table, req({ internalPort: 7000, suggestedExternalPort: 45000 }))
    const b = mapOk(table, req({ client: B, internalPort: 7000, suggestedExternalPort: 45000 }))
    expect(b.lease.externalPort).not.toBe(45000)
  })
  it('with no hint tries the internal port first, then picks a free port in range', () => {
    const { table } = make({ minPort: 2000, maxPort: 3000 })
    expect(mapOk(table, req({ internalPort: 2500 })).lease.externalPort).toBe(2500)
    const p = mapOk(table, req({ internalPort: 80 })).lease.externalPort
    expect(p).toBeGreaterThanOrEqual(2000)
    expect(p).toBeLessThanOrEqual(3000)
  })
  it('symmetric mapping: internal 0 points the forward at the external port', () => {
    const { table } = make()
    const o = mapOk(table, req({ protocol: 'udp', internalPort: 0, suggestedExternalPort: 1, lifetimeSeconds: 60 }))
    expect(o.lease.internalPort).toBe(0)
    expect(o.lease.targetPort).toBe(o.lease.externalPort)
    expect(o.changes[0]?.forward.internalPort).toBe(o.lease.externalPort)
  })
  it('gives UDP and TCP of the same internal port the same external number (gluetun checks this)', () => {
    const { table } = make()
    const u = mapOk(table, req({ protocol: 'udp', internalPort: 0, suggestedExternalPort: 1, lifetimeSeconds: 60 }))
    const t = mapOk(table, req({ protocol: 'tcp', internalPort: 0, suggestedExternalPort: 1, lifetimeSeconds: 60 }))
    expect(t.lease.externalPort).toBe(u.lease.externalPort)
  })
  it('never gives another client the companion port of a held port (RFC 6886 §3.3)', () => {
    const { table } = make()
    mapOk(table, req({ protocol: 'udp', suggestedExternalPort: 40000 }))
    const b = mapOk(table, req({ client: B, protocol: 'tcp', suggestedExternalPort: 40000 }))
    expect(b.lease.externalPort).not.toBe(40000)
  })
  it('clamps lifetimes to the configured range', () => {
    const { table } = make()
    expect(mapOk(table, req({ lifetimeSeconds: 60 })).lease.lifetimeSeconds).toBe(120)
    expect(mapOk(table, req({ internalPort: 1, lifetimeSeconds: 3_600_000 })).lease.lifetimeSeconds).toBe(7200)
    expect(mapOk(table, req({ internalPort: 2, lifetimeSeconds: 0xffffffff })).lease.lifetimeSeconds).toBe(7200)
    expect(mapOk(table, req({ internalPort: 3, lifetimeSeconds: 3600 })).lease.lifetimeSeconds).toBe(3600)
  })
  it('deletes one mapping; the external port hint is irrelevant', () => {
    const { table } = make()
    const o = mapOk(table, req({ suggestedExternalPort: 40000 }))
    const r = table.remove(A, 'tcp', 8080)
    expect(r.removed).toEqual([o.lease])
    expect(r.changes).toEqual([{ op: 'delete', forward: o.changes[0]!.forward }])
    expect(table.size).toBe(0)
    expect(table.remove(A, 'tcp', 8080).changes).toEqual([]) // deleting what is not there succeeds, changes nothing
  })
  it("internal port 0 with lifetime 0 deletes all of the client's mappings of that protocol only", () => {
    const { table } = make()
    mapOk(table, req({ internalPort: 1 }))
    mapOk(table, req({ internalPort: 2 }))
    mapOk(table, req({ internalPort: 3, protocol: 'udp' }))
    mapOk(table, req({ client: B, internalPort: 1 }))
    expect(
      table
        .remove(A, 'tcp', 0)
        .removed.map((l) => l.internalPort)
        .sort(),
    ).toEqual([1, 2])
    expect(
      table
        .leases()
        .map((l) => `${l.client}/${l.protocol}/${l.internalPort}`)
        .sort(),
    ).toEqual([`${A}/udp/3`, `${B}/tcp/1`])
  })
  it("isolates clients: B cannot delete or renew A's mapping", () => {
    const { table } = make()
    const a = mapOk(table, req({ suggestedExternalPort: 40000 }))
    expect(table.remove(B, 'tcp', 8080).removed).toEqual([])
    const b = mapOk(table, req({ client: B, suggestedExternalPort: 40000 }))
    expect(b.lease.externalPort).not.toBe(40000)
    expect(table.get(A, 'tcp', 8080)).toBe(a.lease)
  })
  it('expires exactly at its lifetime, all due leases in one removal', () => {
    const { table, clock } = make()
    mapOk(table, req({ internalPort: 1, lifetimeSeconds: 120 }))
    mapOk(table, req({ internalPort: 2, lifetimeSeconds: 120 }))
    mapOk(table, req({ internalPort: 3, lifetimeSeconds: 300 }))
    expect(table.nextDeadline()).toBe(1_000 + 120_000)
    clock.advance(119_999)
    expect(table.takeExpired().removed).toEqual([])
    clock.advance(1)
    const r = table.takeExpired()
    expect(r.removed.map((l) => l.internalPort).sort()).toEqual([1, 2])
    expect(r.changes).toHaveLength(2)
    expect(table.nextDeadline()).toBe(1_000 + 300_000)
  })
  it('a renewed lease does not expire at its old deadline', () => {
    const { table, clock } = make()
    mapOk(table, req({ lifetimeSeconds: 120 }))
    clock.advance(100_000)
    mapOk(table, req({ lifetimeSeconds: 120 }))
    clock.advance(30_000)
    expect(table.takeExpired().removed).toEqual([])
    expect(table.nextDeadline()).toBe(1_000 + 220_000)
  })
  it('answers 4 when the range is exhausted, and a freed port can be reused', () => {
    const { table } = make({ minPort: 5000, maxPort: 5002 })
    for (const p of [1, 2, 3]) mapOk(table, req({ internalPort: p }))
    const o = table.map(req({ internalPort: 4 }))
    expect(o).toEqual({ ok: false, reason: 'no-ports' })
    table.remove(A, 'tcp', 2)
    expect(mapOk(table, req({ internalPort: 4 })).lease.externalPort).toBeGreaterThanOrEqual(5000)
  })
  it('answers 4 beyond the per-client limit; other clients are unaffected', () => {
    const { table } = make({ maxPerClient: 2 })
    mapOk(table, req({ internalPort: 1 }))
    mapOk(table, req({ internalPort: 2 }))
    expect(table.map(req({ internalPort: 3 }))).toEqual({ ok: false, reason: 'client-limit' })
    expect(table.map(req({ client: B, internalPort: 3 })).ok).toBe(true)
  })
  it('undo of a new mapping frees its port; undo of a removal restores it', () => {
    const { table } = make()
    const o = mapOk(table, req({ suggestedExternalPort: 40000 }))
    o.undo()
    expect(table.size).toBe(0)
    const again = mapOk(table, req({ client: B, suggestedExternalPort: 40000 }))
    expect(again.lease.externalPort).toBe(40000)
    const r = table.remove(B, 'tcp', 8080)
    r.undo()
    expect(table.get(B, 'tcp', 8080)?.externalPort).toBe(40000)
  })
  it('refuses an unparseable client address', () => {
    const { table } = make()
    expect(table.map(req({ client: 'nonsense' }))).toEqual({ ok: false, reason: 'bad-client' })
  })
  it('scales: 20,000 leases, then every port of a small range full', () => {
    const { table } = make()
    for (let i = 0; i < 20_000; i++)
      mapOk(table, req({ client: `10.8.${(i >> 8) & 255}.${(i & 255) + 1 > 254 ? 1 : (i & 255) + 1}`, internalPort: 1 + (i % 60000) }))
    expect(new Set(table.leases().map((l) => `${l.protocol}/${l.externalPort}`)).size).toBe(table.size)
  })

  it('static forwards: never expire, block NAT-PMP from their port, and ignore the lease range', () => {
    const { table, clock } = make({ minPort: 20000, maxPort: 30000, isReserved: (p) => p === 51820 })
    const s = table.addStatic(A, 'tcp', 8080, 80)
    expect(s).toMatchObject({ ok: true, changes: [{ op: 'add', forward: { protocol: 'tcp', externalPort: 8080, internalAddress: A, internalPort: 80 } }] })
    expect(table.addStatic(A, 'tcp', 8080, 80)).toMatchObject({ ok: true, changes: [] }) // idempotent
    expect(table.addStatic(B, 'tcp', 8080, 80)).toEqual({ ok: false, reason: 'taken' })
    expect(table.addStatic(B, 'udp', 8080, 80)).toEqual({ ok: false, reason: 'taken' }) // companion belongs to A
    expect(table.addStatic(A, 'udp', 51820, 1)).toEqual({ ok: false, reason: 'reserved' })
    expect(table.addStatic(A, 'udp', 25000, 25000).ok).toBe(true)
    const b = mapOk(table, req({ client: B, protocol: 'udp', suggestedExternalPort: 25000 }))
    expect(b.lease.externalPort).not.toBe(25000)
    clock.advance(10 * 86400_000)
    expect(table.takeExpired().removed.filter((l) => l.origin === 'static')).toEqual([])
    expect(table.byExternal('tcp', 8080)?.origin).toBe('static')
    expect(table.remove(A, 'tcp', 80).removed).toEqual([]) // a NAT-PMP delete cannot remove it
    expect(table.removeClient(A).removed).toEqual([])
    expect(table.removeStatic(B, 'tcp', 8080).changes).toEqual([]) // not B's
    expect(table.removeStatic(A, 'tcp', 8080).changes).toHaveLength(1)
    expect(table.addStatic(B, 'tcp', 8080, 80).ok).toBe(true)
  })
  it('a static forward cannot take a port a lease holds', () => {
    const { table } = make()
    mapOk(table, req({ suggestedExternalPort: 40000 }))
    expect(table.addStatic(B, 'tcp', 40000, 1)).toEqual({ ok: false, reason: 'taken' })
  })
  it('PCP: one mapping with NAT-PMP for the same key; another nonce is refused; PREFER_FAILURE takes only the suggestion', () => {
    const { table } = make()
    const n = mapOk(table, req({ suggestedExternalPort: 40000 }))
    const p = mapOk(table, req({ origin: 'pcp', nonce: 'aa', suggestedExternalPort: 41000 }))
    expect(p.lease).toBe(n.lease)
    expect(p.lease.origin).toBe('pcp')
    expect(table.map(req({ origin: 'pcp', nonce: 'bb' }))).toEqual({ ok: false, reason: 'nonce-mismatch' })
    mapOk(table, req({ client: B, internalPort: 1, suggestedExternalPort: 42000 }))
    expect(table.map(req({ internalPort: 2, origin: 'pcp', nonce: 'cc', suggestedExternalPort: 42000, exactPort: true }))).toEqual({
      ok: false,
      reason: 'port-unavailable',
    })
    expect(mapOk(table, req({ internalPort: 2, origin: 'pcp', nonce: 'cc', suggestedExternalPort: 42001, exactPort: true })).lease.externalPort).toBe(42001)
  })

  it('IPv6: a unique-local client maps on the public IPv6 address, a port space apart from IPv4', () => {
    const { table } = make()
    const v4 = mapOk(table, req({ suggestedExternalPort: 40000 }))
    const v6 = mapOk(table, req({ client: 'fd42:42::3', suggestedExternalPort: 40000 }))
    expect(v4.lease.externalPort).toBe(40000)
    expect(v6.lease.externalPort).toBe(40000) // another address, another port space
    expect(v6.changes).toEqual([{ op: 'add', forward: { protocol: 'tcp', externalPort: 40000, internalAddress: 'fd42:42::3', internalPort: 8080 } }])
    // Another IPv6 client is kept off that port, as on IPv4.
    expect(mapOk(table, req({ client: 'fd42:42::4', suggestedExternalPort: 40000 })).lease.externalPort).not.toBe(40000)
    // Spellings of one address are one client.
    expect(table.get('FD42:0042:0::3', 'tcp', 8080)).toBe(v6.lease)
  })
  it('IPv6: a global client gets a pinhole on its own port, whatever it suggests', () => {
    const { table } = make()
    const p = mapOk(table, req({ client: '2001:db8:200::3', internalPort: 6881, suggestedExternalPort: 1, pinhole: true }))
    expect(p.lease.externalPort).toBe(6881)
    expect(p.changes).toEqual([
      { op: 'add', forward: { protocol: 'tcp', externalPort: 6881, internalAddress: '2001:db8:200::3', internalPort: 6881, pinhole: true } },
    ])
    // A pinhole holds no shared port: another global client may open 6881 on its own address.
    expect(mapOk(table, req({ client: '2001:db8:200::4', internalPort: 6881, pinhole: true })).lease.externalPort).toBe(6881)
    expect(table.remove('2001:db8:200::3', 'tcp', 6881).changes).toEqual([{ op: 'delete', forward: p.changes[0]!.forward }])
  })
  it('IPv6 static forwards: NAT66 from the public address for a ULA client, a pinhole (same port only) for a global one', () => {
    const { table } = make({ isPinholeClient: (a) => a.startsWith('2001:') })
    expect(table.addStatic('fd42:42::2', 'tcp', 8080, 80)).toMatchObject({
      ok: true,
      changes: [{ op: 'add', forward: { internalAddress: 'fd42:42::2', externalPort: 8080, internalPort: 80 } }],
    })
    expect(table.addStatic('fd42:42::9', 'tcp', 8080, 80)).toEqual({ ok: false, reason: 'taken' })
    expect(table.addStatic('2001:db8:200::3', 'udp', 27015, 27015)).toMatchObject({ ok: true, changes: [{ op: 'add', forward: { pinhole: true } }] })
    expect(table.addStatic('2001:db8:200::3', 'tcp', 8080, 80)).toEqual({ ok: false, reason: 'taken' }) // a pinhole cannot translate
    expect(table.removeStatic('2001:db8:200::3', 'udp', 27015).changes).toHaveLength(1)
    expect(table.staticCount).toBe(1)
  })

  it('takeExpired(limit) takes at most limit leases; the rest stay due', () => {
    const { table, clock } = make()
    for (let i = 1; i <= 5; i++) mapOk(table, req({ internalPort: i, lifetimeSeconds: 120 }))
    clock.advance(120_000)
    expect(table.takeExpired(2).removed).toHaveLength(2)
    expect(table.nextDeadline()).toBe(1_000 + 120_000)
    expect(table.takeExpired().removed).toHaveLength(3)
    expect(table.nextDeadline()).toBeNull()
  })
  it('a renewal that shortens a lease makes it expire at the new, earlier deadline', () => {
    const { table, clock } = make()
    mapOk(table, req({ lifetimeSeconds: 7200 }))
    mapOk(table, req({ lifetimeSeconds: 120 }))
    expect(table.nextDeadline()).toBe(1_000 + 120_000)
    clock.advance(120_000)
    expect(table.takeExpired().removed).toHaveLength(1)
  })
  it('many renewals leave the lease due exactly once, at its last deadline', () => {
    const { table, clock } = make()
    mapOk(table, req({ lifetimeSeconds: 120 }))
    for (let i = 0; i < 50; i++) {
      clock.advance(10_000)
      mapOk(table, req({ lifetimeSeconds: 120 }))
    }
    clock.advance(119_999)
    expect(table.takeExpired().removed).toEqual([])
    clock.advance(1)
    expect(table.takeExpired().removed).toHaveLength(1)
    expect(table.nextDeadline()).toBeNull()
  })
})
