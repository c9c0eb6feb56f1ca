import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { ForwardChange, Protocol } from '../../../src/core/forward.js'
import { isWgpmpError } from '../../../src/core/errors.js'
import { silentLogger } from '../../../src/log.js'
import {
  StaticForwardStore,
  StaticForwards,
  forwardId,
  formatRange,
  formatSpec,
  overlaps,
  parseConfigStaticForwards,
  parseForwardSpec,
  reserveStatic,
  specFromBody,
  writeFileAtomic,
  type StaticForwardSpec,
  type StaticSink,
  type StaticSinkOutcome,
} from '../../../src/mappings/static.js'

const spec = (text: string): StaticForwardSpec => {
  const r = parseForwardSpec(text)
  if (!r.ok) throw new Error(r.error)
  return r.spec
}

/** A StaticSink with the semantics proposed for MappingTable: one owner per (protocol, port). */
class FakeSink implements StaticSink {
  readonly held = new Map<string, { address: string; internalPort: number; static: boolean }>()
  reserved = new Set<number>([51820])
  addStatic(address: string, protocol: Protocol, externalPort: number, internalPort: number): StaticSinkOutcome {
    const k = `${protocol}/${externalPort}`
    const h = this.held.get(k)
    if (this.reserved.has(externalPort)) return { ok: false, reason: 'reserved' }
    if (h) return h.static && h.address === address && h.internalPort === internalPort ? { ok: true, changes: [], undo: () => {} } : { ok: false, reason: 'taken' }
    this.held.set(k, { address, internalPort, static: true })
    return { ok: true, changes: [{ op: 'add', forward: { protocol, externalPort, internalAddress: address, internalPort } }], undo: () => this.held.delete(k) }
  }
  removeStatic(address: string, protocol: Protocol, externalPort: number) {
    const k = `${protocol}/${externalPort}`
    const h = this.held.get(k)
    if (!h?.static || h.address !== address) return { changes: [], undo: () => {} }
    this.held.delete(k)
    const change: ForwardChange = { op: 'delete', forward: { protocol, externalPort, internalAddress: address, internalPort: h.internalPort } }
    return { changes: [change], undo: () => this.held.set(k, h) }
  }
}

describe('parsing', () => {
  it.each([
    ['8080:80/tcp', 'tcp', [8080, 8080], [80, 80]],
    ['27015-27030/udp', 'udp', [27015, 27030], [27015, 27030]],
    ['443/both', 'both', [443, 443], [443, 443]],
    ['6881', 'both', [6881, 6881], [6881, 6881]],
    ['  1000-1999:31000-31999/TCP ', 'tcp', [1000, 1999], [31000, 31999]],
    ['65535/udp', 'udp', [65535, 65535], [65535, 65535]],
  ])('%s', (text, protocol, ext, int) => {
    expect(parseForwardSpec(text)).toEqual({ ok: true, spec: { protocol, external: { first: ext[0], last: ext[1] }, internal: { first: int[0], last: int[1] } } })
  })

  it.each([
    ['', /expected EXT/],
    ['80/sctp', /protocol must be/],
    ['0/tcp', /1\.\.65535/],
    ['65536/tcp', /1\.\.65535/],
    ['30-20/udp', /reversed/],
    ['1000-1010:2000-2005/tcp', /has 6 ports, external_port 1000-1010 has 11/],
    ['80:/tcp', /expected EXT/],
    ['8080-/tcp', /not a port or a range/],
    ['a:b', /expected EXT/],
  ])('rejects %j', (text, error) => {
    const r = parseForwardSpec(text)
    expect(r.ok).toBe(false)
    if (!r.ok) expect(r.error).toMatch(error)
  })

  it('turns API bodies into specs; internal defaults to external', () => {
    expect(specFromBody({ protocol: 'tcp', external_port: 8080, internal_port: 80 })).toEqual({ ok: true, spec: spec('8080:80/tcp') })
    expect(specFromBody({ protocol: 'udp', external_port: '27015-27030' })).toEqual({ ok: true, spec: spec('27015-27030/udp') })
    expect(specFromBody({ protocol: 'udp', external_port: '27015-27030', internal_port: 5 }).ok).toBe(false)
  })

  it('formats, ids and overlaps', () => {
    expect(formatSpec(spec('8080:80/tcp'))).toBe('8080:80/tcp')
    expect(formatSpec(spec('27015-27030/udp'))).toBe('27015-27030/udp')
    expect(formatRange({ first: 5, last: 5 })).toBe(5)
    expect(forwardId(spec('8080:80/tcp'))).toBe('tcp-8080')
    expect(forwardId(spec('27015-27030/both'))).toBe('both-27015-27030')
    expect(overlaps(spec('100-200/tcp'), spec('200-300/both'))).toBe(true)
    expect(overlaps(spec('100-200/tcp'), spec('150/udp'))).toBe(false)
    expect(overlaps(spec('100-200/udp'), spec('201-300/udp'))).toBe(false)
  })

  it('parses config static_forwards keyed by public key or id', () => {
    const r = parseConfigStaticForwards({ KEY: ['8080:80/tcp', { protocol: 'udp', external_port: '5000-5001' }, 'bad'] }, (k) => `id-of-${k}`)
    expect([...r.forwards]).toEqual([['id-of-KEY', [spec('8080:80/tcp'), spec('5000-5001/udp')]]])
    expect(r.problems).toEqual([expect.stringMatching(/^static_forwards\.KEY\[2\]: "bad"/)])
  })
})

describe('reserveStatic', () => {
  it('is all or nothing', () => {
    const sink = new FakeSink()
    sink.held.set('udp/27020', { address: '10.8.0.9', internalPort: 27020, static: false })
    const r = reserveStatic(sink, '10.8.0.2', spec('27015-27030/both'))
    expect(r).toEqual({ ok: false, conflict: { protocol: 'udp', port: 27020, reason: 'taken' } })
    expect(sink.held.size).toBe(1)
  })

  it('maps a range port by port with the internal offset', () => {
    const r = reserveStatic(new FakeSink(), '10.8.0.2', spec('1000-1002:2000-2002/tcp'))
    expect(r.ok && r.changes.map((c) => [c.forward.externalPort, c.forward.internalPort])).toEqual([[1000, 2000], [1001, 2001], [1002, 2002]])
  })
})

describe('writeFileAtomic and StaticForwardStore', () => {
  let dir: string
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'wgpmp-static-'))
  })
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('writes through a temp file, creates the directory, leaves no temp behind, mode 0600', async () => {
    const path = join(dir, 'sub', 'state.json')
    await writeFileAtomic(path, 'one')
    await writeFileAtomic(path, 'two')
    expect(await readFile(path, 'utf8')).toBe('two')
    expect(await readdir(join(dir, 'sub'))).toEqual(['state.json'])
    expect((await stat(path)).mode & 0o777).toBe(0o600)
  })

  it('writes pieces from an async iterable in order; a failing one leaves the old file and no temp', async () => {
    const path = join(dir, 'state.json')
    async function* pieces(fail: boolean) {
      yield '{"a":'
      await new Promise((r) => setImmediate(r))
      yield 'é'.repeat(70_000) // multi-byte text across a large piece
      if (fail) throw new Error('render failed')
      yield '}'
    }
    await writeFileAtomic(path, pieces(false))
    expect(await readFile(path, 'utf8')).toBe(`{"a":${'é'.repeat(70_000)}}`)
    await expect(writeFileAtomic(path, pieces(true))).rejects.toThrow('render failed')
    expect(await readFile(path, 'utf8')).toBe(`{"a":${'é'.repeat(70_000)}}`)
    expect(await readdir(dir)).toEqual(['state.json'])
  })

  it('rejects and leaves the old file when the target cannot be replaced', async () => {
    const path = join(dir, 'state.json')
    await writeFile(path, 'old')
    await expect(writeFileAtomic(join(path, 'x'), 'new')).rejects.toThrow() // parent is a file
    expect(await readFile(path, 'utf8')).toBe('old')
  })

  it('a missing file is an empty store; forwards survive a reopen with the same ids', async () => {
    const path = join(dir, 'state.json')
    const s = await StaticForwardStore.open(path)
    expect(s.list()).toEqual([])
    const f = { ...spec('27015-27030/udp'), id: 'udp-27015-27030', client: 'oLCGdaDSDw-O', source: 'api' as const, createdAt: '2026-01-01T00:00:00.000Z' }
    await Promise.all([s.put(f), s.put({ ...f, ...spec('8080:80/tcp'), id: 'tcp-8080' })])
    const again = await StaticForwardStore.open(path)
    expect(again.list()).toEqual(s.list())
    expect(JSON.parse(await readFile(path, 'utf8'))).toMatchObject({
      version: 1,
      static_forwards: [{ id: 'udp-27015-27030', external_port: '27015-27030', internal_port: '27015-27030', protocol: 'udp' }, { id: 'tcp-8080', external_port: 8080, internal_port: 80 }],
    })
    expect(await again.delete('tcp-8080')).toBe(true)
    expect(await again.delete('tcp-8080')).toBe(false)
    expect((await StaticForwardStore.open(path)).list().map((x) => x.id)).toEqual(['udp-27015-27030'])
  })

  it('keeps unknown top-level keys of the state file', async () => {
    const path = join(dir, 'state.json')
    await writeFile(path, JSON.stringify({ version: 1, static_forwards: [], epoch: 7 }))
    const s = await StaticForwardStore.open(path)
    await s.persist()
    expect(JSON.parse(await readFile(path, 'utf8'))).toEqual({ version: 1, static_forwards: [], epoch: 7 })
  })

  it.each([
    ['not json', '{', /not valid JSON/],
    ['wrong version', '{"version":2,"static_forwards":[]}', /version/],
    ['bad forward', '{"version":1,"static_forwards":[{"id":"x"}]}', /required/],
    ['bad range', '{"version":1,"static_forwards":[{"id":"x","client":"c","protocol":"tcp","external_port":"10-20","internal_port":5,"created_at":"t"}]}', /has 1 ports/],
  ])('rejects a state file that is %s with WGPMP_STATE_INVALID', async (_n, text, error) => {
    const path = join(dir, 'state.json')
    await writeFile(path, text)
    await expect(StaticForwardStore.open(path)).rejects.toSatisfy((e) => isWgpmpError(e, 'WGPMP_STATE_INVALID') && error.test((e as Error).message))
  })

  it('a failed write takes the forward back out', async () => {
    const s = await StaticForwardStore.open(join(dir, 'sub', 'state.json'))
    await writeFile(join(dir, 'sub'), '') // the state directory cannot be created now
    const f = { ...spec('80/tcp'), id: 'tcp-80', client: 'c', source: 'api' as const, createdAt: 't' }
    await expect(s.put(f)).rejects.toThrow()
    expect(s.list()).toEqual([])
  })
})

describe('StaticForwards', () => {
  let dir: string
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'wgpmp-static-'))
  })
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  const setup = async () => {
    const sink = new FakeSink()
    const batches: ForwardChange[][] = []
    let refuse = false
    const addresses = new Map([['alice', '10.8.0.2'], ['bob', '10.8.0.3']])
    const store = await StaticForwardStore.open(join(dir, 'state.json'))
    const sf = new StaticForwards({
      store,
      sink,
      commit: (c) => {
        if (refuse) return Promise.reject(new Error('nft refused'))
        if (c.length > 0) batches.push([...c])
        return Promise.resolve()
      },
      addressesOf: (id) => { const a = addresses.get(id); return a === undefined ? [] : [a] },
      log: silentLogger(),
      now: () => new Date('2026-05-01T12:00:00Z'),
    })
    return { sink, batches, sf, store, addresses, refuse: (v: boolean) => (refuse = v) }
  }

  it('a client with an IPv6 address gets the forward on both addresses; a pinhole that cannot translate is skipped there', async () => {
    const { FakeClock } = await import('../../../src/core/clock.js')
    const { MappingTable } = await import('../../../src/mappings/table.js')
    const table = new MappingTable({ clock: new FakeClock(0), minPort: 1024, maxPort: 65535, minLifetimeSeconds: 120, maxLifetimeSeconds: 7200, isPinholeClient: (a) => a.startsWith('2001:') })
    const batches: ForwardChange[][] = []
    const addrs = new Map([['alice', ['10.8.0.2', 'fd42:42::2']], ['bob', ['10.8.0.3', '2001:db8:200::3']]])
    const sf = new StaticForwards({
      store: await StaticForwardStore.open(join(dir, 'state.json')), sink: table, log: silentLogger(),
      commit: (c) => (batches.push([...c]), Promise.resolve()),
      addressesOf: (id) => addrs.get(id) ?? [],
    })
    expect((await sf.create('alice', spec('8080:80/tcp'))).ok).toBe(true)
    expect(batches.at(-1)!.map((c) => `${c.forward.internalAddress}:${c.forward.internalPort}`)).toEqual(['10.8.0.2:80', 'fd42:42::2:80'])
    expect((await sf.create('bob', spec('443/tcp'))).ok).toBe(true)
    expect(batches.at(-1)!.map((c) => [c.forward.internalAddress, c.forward.pinhole === true])).toEqual([['10.8.0.3', false], ['2001:db8:200::3', true]])
    expect((await sf.create('bob', spec('9090:90/tcp'))).ok).toBe(true) // a pinhole cannot map 9090 to 90: IPv4 only
    expect(batches.at(-1)!.map((c) => c.forward.internalAddress)).toEqual(['10.8.0.3'])
    expect(await sf.delete('alice', 'tcp-8080')).toBe('deleted')
    expect(batches.at(-1)!.map((c) => `${c.op} ${c.forward.internalAddress}`)).toEqual(['delete 10.8.0.2', 'delete fd42:42::2'])
  })

  it('a 1000-port range is one batch (2000 elements for both)', async () => {
    const { sf, batches, sink } = await setup()
    const r = await sf.create('alice', spec('20000-20999/both'))
    expect(r).toMatchObject({ ok: true, forward: { id: 'both-20000-20999', client: 'alice', source: 'api', createdAt: '2026-05-01T12:00:00.000Z' } })
    expect(batches).toHaveLength(1)
    expect(batches[0]).toHaveLength(2000)
    expect(sink.held.size).toBe(2000)
  })

  it('409s: overlapping static forward, NAT-PMP-held port, reserved port; 404 unknown client', async () => {
    const { sf, sink } = await setup()
    await sf.create('alice', spec('8080:80/tcp'))
    expect(await sf.create('bob', spec('8000-8100/both'))).toEqual({ ok: false, code: 'port-taken', message: '8000-8100/both overlaps the static forward 8080:80/tcp' })
    sink.held.set('udp/9000', { address: '10.8.0.3', internalPort: 9000, static: false })
    expect(await sf.create('alice', spec('9000/udp'))).toEqual({ ok: false, code: 'port-taken', message: 'udp port 9000 is already forwarded' })
    expect(await sf.create('alice', spec('51820/udp'))).toEqual({ ok: false, code: 'port-taken', message: 'udp port 51820 is reserved' })
    expect(await sf.create('nobody', spec('1234/tcp'))).toEqual({ ok: false, code: 'client-not-found' })
  })

  it('a refused commit changes nothing', async () => {
    const { sf, sink, store, refuse } = await setup()
    refuse(true)
    await expect(sf.create('alice', spec('7000-7010/tcp'))).rejects.toThrow('nft refused')
    expect(sink.held.size).toBe(0)
    expect(store.list()).toEqual([])
  })

  it('deletes: releases ports in one batch; 404 for unknown or other client; config forwards are not deletable', async () => {
    const { sf, sink, batches } = await setup()
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
    const { sf, sink, batches, addresses } = await setup()
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

  it('deactivate withdraws a client\'s static ports in one batch and activate brings them back', async () => {
    const { sf, sink, batches } = await setup()
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
    const first = await setup()
    await first.sf.create('alice', spec('27015-27030/udp'))
    const second = await setup() // same dir: reopens the state file
    expect(second.sf.forClient('alice').map((f) => f.id)).toEqual(['udp-27015-27030'])
    expect(await second.sf.activate('alice')).toEqual({ installed: 1, conflicts: [] })
    expect(second.batches[0]).toHaveLength(16)
  })
})
