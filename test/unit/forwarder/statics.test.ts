import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { ForwardChange } from '../../../src/core/forward.js'
import { silentLogger } from '../../../src/log.js'
import { StaticForwardStore, type StoredForward } from '../../../src/state/static-store.js'
import { StaticForwards } from '../../../src/forwarder/statics.js'
import { FakeSink, spec } from '../../helpers/static.js'

describe('StaticForwards', () => {
  let dir: string
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'wgpmp-static-'))
  })
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  const setup = (records: StoredForward[] = []) => {
    const sink = new FakeSink()
    const batches: ForwardChange[][] = []
    let refuse = false
    const addresses = new Map([
      ['alice', '10.8.0.2'],
      ['bob', '10.8.0.3'],
    ])
    const store = new StaticForwardStore(records, () => Promise.resolve())
    const sf = new StaticForwards({
      store,
      sink,
      commit: (c) => {
        if (refuse) return Promise.reject(new Error('nft refused'))
        if (c.length > 0) batches.push([...c])
        return Promise.resolve()
      },
      addressesOf: (id) => {
        const a = addresses.get(id)
        return a === undefined ? [] : [a]
      },
      log: silentLogger(),
      clock: { wall: () => Date.parse('2026-05-01T12:00:00Z') },
    })
    return { sink, batches, sf, store, addresses, refuse: (v: boolean) => (refuse = v) }
  }

  it('a client with an IPv6 address gets the forward on both addresses; a pinhole that cannot translate is skipped there', async () => {
    const { FakeClock } = await import('../../../src/core/clock.js')
    const { MappingTable } = await import('../../../src/mappings/table.js')
    const table = new MappingTable({
      clock: new FakeClock(0),
      minPort: 1024,
      maxPort: 65535,
      minLifetimeSeconds: 120,
      maxLifetimeSeconds: 7200,
      isPinholeClient: (a) => a.startsWith('2001:'),
    })
    const batches: ForwardChange[][] = []
    const addrs = new Map([
      ['alice', ['10.8.0.2', 'fd42:42::2']],
      ['bob', ['10.8.0.3', '2001:db8:200::3']],
    ])
    const sf = new StaticForwards({
      store: new StaticForwardStore([], () => Promise.resolve()),
      sink: table,
      log: silentLogger(),
      commit: (c) => (batches.push([...c]), Promise.resolve()),
      addressesOf: (id) => addrs.get(id) ?? [],
    })
    expect((await sf.create('alice', spec('8080:80/tcp'))).ok).toBe(true)
    expect(batches.at(-1)!.map((c) => `${c.forward.internalAddress}:${c.forward.internalPort}`)).toEqual(['10.8.0.2:80', 'fd42:42::2:80'])
    expect((await sf.create('bob', spec('443/tcp'))).ok).toBe(true)
    expect(batches.at(-1)!.map((c) => [c.forward.internalAddress, c.forward.pinhole === true])).toEqual([
      ['10.8.0.3', false],
      ['2001:db8:200::3', true],
    ])
    expect((await sf.create('bob', spec('9090:90/tcp'))).ok).toBe(true) // a pinhole cannot map 9090 to 90: IPv4 only
    expect(batches.at(-1)!.map((c) => c.forward.internalAddress)).toEqual(['10.8.0.3'])
    expect(await sf.delete('alice', 'tcp-8080')).toBe('deleted')
    expect(batches.at(-1)!.map((c) => `${c.op} ${c.forward.internalAddress}`)).toEqual(['delete 10.8.0.2', 'delete fd42:42::2'])
  })

  it('a 1000-port range is one batch (2000 elements for both)', async () => {
    const { sf, batches, sink } = setup()
    const r = await sf.create('alice', spec('20000-20999/both'))
    expect(r).toMatchObject({ ok: true, forward: { id: 'both-20000-20999', client: 'alice', source: 'api', createdAt: '2026-05-01T12:00:00.000Z' } })
    expect(batches).toHaveLength(1)
    expect(batches[0]).toHaveLength(2000)
    expect(sink.held.size).toBe(2000)
  })

  it('409s: overlapping static forward, NAT-PMP-held port, reserved port; 404 unknown client', async () => {
    const { sf, sink } = setup()
    await sf.create('alice', spec('8080:80/tcp'))
    expect(await sf.create('bob', spec('8000-8100/both'))).toEqual({
      ok: false,
      refusal: 'port-unavailable',
      message: '8000-8100/both overlaps the static forward 8080:80/tcp',
    })
    sink.held.set('udp/9000', { address: '10.8.0.3', internalPort: 9000, static: false })
    expect(await sf.create('alice', spec('9000/udp'))).toEqual({ ok: false, refusal: 'port-unavailable', message: 'udp port 9000 is already forwarded' })
    expect(await sf.create('alice', spec('51820/udp'))).toEqual({ ok: false, refusal: 'port-unavailable', message: 'udp port 51820 is reserved' })
    expect(await sf.create('nobody', spec('1234/tcp'))).toEqual({ ok: false, refusal: 'not-a-client' })
  })

  it('a refused commit changes nothing', async () => {
    const { sf, sink, store, refuse } = setup()
    refuse(true)
    await expect(sf.create('alice', spec('7000-7010/tcp'))).rejects.toThrow('nft refused')
    expect(sink.held.size).toBe(0)
    expect(store.list()).toEqual([])
  })

  it('deletes: releases ports in one batch; 404 for unknown or other client; config forwards are not deletable', async () => {
    const { sf, sink, batches } = setup()
    expect(sf.setConfigForwards(new Map([['bob', [spec('443/both'), spec('443/tcp')]]]))).toEqual([
      'static_forwards: 443/tcp for bob overlaps 443/both for bob',
    ])
    await sf.create('alice', spec('7000-7009/tcp'))
    expect(await sf.delete('bob', 'tcp-7000-7009')).toBe('forward-not-found')
    expect(await sf.delete('alice', 'nope')).toBe('forward-not-found')
    expect(await sf.delete('bob', 'both-443')).toBe('config-owned')
    expect(await sf.delete('alice', 'tcp-7000-7009')).toBe('deleted')
    expect(batches.at(-1)).toHaveLength(10)
    expect(batches.at(-1)!.every((c) => c.op === 'delete')).toBe(true)
    expect(sink.held.size).toBe(0)
    expect(sf.forClient('alice')).toEqual([])
  })

  it('activate installs config and stored forwards once, skipping conflicts', async () => {
    const { sf, sink, batches, addresses } = setup()
    sf.setConfigForwards(new Map([['bob', [spec('443/both')]]]))
    addresses.delete('bob')
    expect(await sf.activate('bob')).toEqual({ installed: 0, conflicts: [] })
    addresses.set('bob', '10.8.0.3')
    expect(await sf.activate('bob')).toEqual({ installed: 1, conflicts: [] })
    expect(batches.at(-1)).toHaveLength(2)
    expect(await sf.activate('bob')).toEqual({ installed: 0, conflicts: [] }) // idempotent, no batch
    expect(batches).toHaveLength(1)
    sink.held.clear()
    sink.held.set('tcp/443', { address: '10.8.0.9', internalPort: 443, static: false })
    expect(await sf.activate('bob')).toEqual({ installed: 0, conflicts: [{ protocol: 'tcp', port: 443, reason: 'taken' }] })
  })

  it("deactivate withdraws a client's static ports in one batch and activate brings them back", async () => {
    const { sf, sink, batches } = setup()
    sf.setConfigForwards(new Map([['alice', [spec('443/both')]]]))
    await sf.create('alice', spec('7000-7004/udp'))
    await sf.activate('alice')
    expect(sink.held.size).toBe(7)
    expect(await sf.deactivate('alice', '10.8.0.2')).toBe(7)
    expect(batches.at(-1)!.map((c) => c.op)).toEqual(Array(7).fill('delete'))
    expect(sink.held.size).toBe(0)
    expect(await sf.deactivate('alice', '10.8.0.2')).toBe(0)
    expect(sf.forClient('alice')).toHaveLength(2) // definitions stay
    expect(await sf.activate('alice')).toEqual({ installed: 2, conflicts: [] })
    expect(sink.held.size).toBe(7)
  })

  it('stored forwards come back after a restart and are reinstalled', async () => {
    const first = setup()
    await first.sf.create('alice', spec('27015-27030/udp'))
    const second = setup(first.store.records()) // what the state file held
    expect(second.sf.forClient('alice').map((f) => f.id)).toEqual(['udp-27015-27030'])
    expect(await second.sf.activate('alice')).toEqual({ installed: 1, conflicts: [] })
    expect(second.batches[0]).toHaveLength(16)
  })
})
