/** Lease state file: conversions, schema, corrupt files moved aside, atomic coalesced writes. */
import { chmod, mkdtemp, readdir, readFile, rm, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { Writable } from 'node:stream'
import { createLogger, silentLogger } from '../../../src/log.js'
import { FakeClock } from '../../../src/core/clock.js'
import type { Lease } from '../../../src/core/forward.js'
import {
  epochFromUnixMs,
  epochToUnixMs,
  fromPersisted,
  loadState,
  restorable,
  snapshot,
  renderState,
  renderStateChunks,
  StateStore,
  toPersisted,
  type LeaseRecord,
  type PersistedState,
} from '../../../src/state/store.js'

const T0 = 1_760_000_000_000 // a wall time, unix ms
const lease = (o: Partial<Lease> = {}): Lease => ({
  id: 1,
  client: '10.8.0.2',
  protocol: 'udp',
  internalPort: 51413,
  externalPort: 40000,
  targetPort: 51413,
  pinhole: false,
  origin: 'nat-pmp',
  lifetimeSeconds: 3600,
  createdAt: 5_000,
  expiresAt: 5_000 + 3_600_000,
  ...o,
})
const rec = (o: Partial<LeaseRecord> = {}): LeaseRecord => ({
  client: '10.8.0.2',
  protocol: 'tcp',
  internalPort: 8080,
  externalPort: 40001,
  targetPort: 8080,
  lifetimeSeconds: 7200,
  expiresAtUnixMs: T0 + 60_000,
  createdAtUnixMs: T0 - 1000,
  ...o,
})
const doc = (leases: LeaseRecord[] = [rec()]): PersistedState => ({ version: 1, epochStartedAtUnixMs: T0 - 10_000, leases })

describe('conversions', () => {
  it('toPersisted turns clock ms into unix ms at the given instant', () => {
    const clock = new FakeClock(65_000) // 60 s after the lease was created
    expect(toPersisted(lease(), clock, T0)).toEqual({
      client: '10.8.0.2',
      protocol: 'udp',
      internalPort: 51413,
      externalPort: 40000,
      targetPort: 51413,
      lifetimeSeconds: 3600,
      expiresAtUnixMs: T0 + 3_540_000,
      createdAtUnixMs: T0 - 60_000,
      origin: 'nat-pmp',
    })
  })

  it("keeps a PCP lease's origin and nonce across a restart", () => {
    const clock = new FakeClock(65_000)
    const r = toPersisted(lease({ origin: 'pcp', nonce: '0102030405060708090a0b0c' }), clock, T0)
    expect(r).toMatchObject({ origin: 'pcp', nonce: '0102030405060708090a0b0c' })
    expect(fromPersisted(r, new FakeClock(0), T0)).toMatchObject({ origin: 'pcp', nonce: '0102030405060708090a0b0c' })
  })

  it('a round trip across a restart keeps the time left (minus the downtime)', () => {
    const before = new FakeClock(65_000)
    const r = toPersisted(lease(), before, T0)
    const after = new FakeClock(12) // a new process: the monotonic clock starts anew
    const back = fromPersisted(r, after, T0 + 40_000) // 40 s of downtime
    expect(back).toEqual({
      client: '10.8.0.2',
      protocol: 'udp',
      internalPort: 51413,
      externalPort: 40000,
      targetPort: 51413,
      lifetimeSeconds: 3600,
      expiresAt: 12 + 3_500_000,
      createdAt: 12 - 100_000,
      origin: 'nat-pmp',
    })
  })

  it('fromPersisted drops a lease that expired, even by one ms', () => {
    const clock = new FakeClock(0)
    expect(fromPersisted(rec({ expiresAtUnixMs: T0 }), clock, T0)).toBeNull()
    expect(fromPersisted(rec({ expiresAtUnixMs: T0 + 1 }), clock, T0)?.expiresAt).toBe(1)
  })

  it('a wall clock that went backwards never makes a lease outlive its lifetime', () => {
    const clock = new FakeClock(100)
    const r = fromPersisted(rec({ lifetimeSeconds: 120, expiresAtUnixMs: T0 + 86_400_000, createdAtUnixMs: T0 + 86_000_000 }), clock, T0)
    expect(r?.expiresAt).toBe(100 + 120_000)
    expect(r?.createdAt).toBe(100)
  })

  it('the epoch keeps counting across a restart', () => {
    const a = new FakeClock(50_000)
    const epochStart = 20_000 // 30 s of epoch so far
    const wall = epochToUnixMs(epochStart, a, T0)
    expect(wall).toBe(T0 - 30_000)
    const b = new FakeClock(7)
    const restored = epochFromUnixMs(wall, b, T0 + 5_000) // 5 s later
    expect((b.now() - restored) / 1000).toBe(35)
    expect(epochFromUnixMs(T0 + 999, b, T0)).toBe(7) // start in the future: epoch 0 now
  })

  it('snapshot keeps NAT-PMP and PCP leases in table order, not static ones; restorable drops expired and duplicate ports', () => {
    const clock = new FakeClock(5_000)
    const s = snapshot(
      [lease({ externalPort: 40002 }), lease({ origin: 'static', externalPort: 1 }), lease({ protocol: 'tcp', externalPort: 40009 })],
      0,
      clock,
      T0,
    )
    expect(s.leases.map((l) => `${l.protocol}/${l.externalPort}`)).toEqual(['udp/40002', 'tcp/40009'])
    expect(s).toMatchObject({ version: 1, epochStartedAtUnixMs: T0 - 5_000, savedAtUnixMs: T0 })
    const r = restorable(doc([rec(), rec({ client: '10.8.0.3' }), rec({ externalPort: 5, expiresAtUnixMs: T0 - 1 })]), new FakeClock(0), T0)
    expect(r.leases.map((l) => l.client)).toEqual(['10.8.0.2'])
    expect(r).toMatchObject({ expired: 1, duplicates: 1 })
  })
})

describe('loadState', () => {
  let dir: string
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'wgpmp-state-'))
  })
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('a missing file is a first start', async () => {
    expect(await loadState(join(dir, 'leases.json'), T0)).toEqual({ ok: true, state: null })
  })

  it('loads a valid document (unknown top-level keys tolerated)', async () => {
    const path = join(dir, 'leases.json')
    await writeFile(path, JSON.stringify({ ...doc(), future: true }))
    const r = await loadState(path, T0)
    expect(r.ok && r.state?.leases).toEqual([rec()])
  })

  it.each([
    ['not JSON', '{"version":1,', /not valid JSON/],
    ['wrong version', JSON.stringify({ ...doc(), version: 2 }), /\/version must be equal to constant/],
    ['a bad lease', JSON.stringify(doc([rec({ externalPort: 0 })])), /\/leases\/0\/externalPort must be >= 1/],
    ['a bad address', JSON.stringify(doc([rec({ client: 'evil; rm -rf' })])), /\/leases\/0\/client must match pattern/],
    ['an extra lease field', JSON.stringify(doc([{ ...rec(), evil: 1 } as LeaseRecord])), /must NOT have additional properties/],
    ['an array', '[]', /must be object/],
  ])('%s: reported and moved aside, never thrown', async (_name, text, why) => {
    const path = join(dir, 'leases.json')
    await writeFile(path, text)
    const r = await loadState(path, T0)
    expect(r.ok).toBe(false)
    if (r.ok) return
    expect(r.error.code).toBe('WGPMP_STATE_INVALID')
    expect(r.error.message).toMatch(why)
    expect(r.movedTo).toBe(`${path}.corrupt-${T0}`)
    expect(r.error.message).toContain(r.movedTo)
    expect(await readdir(dir)).toEqual([`leases.json.corrupt-${T0}`])
    expect(await readFile(r.movedTo!, 'utf8')).toBe(text)
  })

  it('an unreadable path (a directory) is reported and moved aside', async () => {
    const path = join(dir, 'leases.json')
    await mkdir(path)
    const r = await loadState(path, T0)
    expect(!r.ok && r.error.message).toMatch(/cannot read \(EISDIR/)
    expect(!r.ok && r.movedTo).toBe(`${path}.corrupt-${T0}`)
  })

  it('reads a file that holds static forwards along with the leases', async () => {
    const path = join(dir, 'state.json')
    const fwd = { id: 'tcp-8080', client: 'oLCGdaDSDw-O', protocol: 'tcp', external_port: 8080, internal_port: 80, created_at: '2026-01-01T00:00:00.000Z' }
    await writeFile(path, JSON.stringify({ version: 1, epochStartedAtUnixMs: T0, leases: [], static_forwards: [fwd] }))
    const r = await loadState(path, T0)
    expect(r.ok && r.state?.static_forwards).toEqual([fwd])
  })
})

describe('StateStore', () => {
  /** A write that the test completes by hand. */
  function manualWrite() {
    const writes: { path: string; data: string; resolve: () => void; reject: (e: Error) => void }[] = []
    const write = (path: string, data: string | AsyncIterable<string>): Promise<void> =>
      new Promise((resolve, reject) => {
        if (typeof data !== 'string') throw new Error('these tests write strings (no render)')
        writes.push({ path, data, resolve, reject })
      })
    return { writes, write }
  }
  const settle = () => new Promise((r) => setImmediate(r))

  it('a burst of changes makes one write of the latest state, after coalesceMs', async () => {
    const clock = new FakeClock(0, T0)
    const { writes, write } = manualWrite()
    let n = 0
    const store = new StateStore({
      path: '/x/leases.json',
      clock,
      log: silentLogger(),
      write,
      snapshot: () => doc(Array.from({ length: n }, (_, i) => rec({ externalPort: 1000 + i }))),
    })
    for (let i = 0; i < 1000; i++) {
      n++
      store.changed()
    }
    clock.advance(199)
    expect(writes).toHaveLength(0)
    clock.advance(1)
    expect(writes).toHaveLength(1)
    expect((JSON.parse(writes[0]!.data) as PersistedState).leases).toHaveLength(1000)
    writes[0]!.resolve()
    await settle()
    expect(store.writes).toBe(1)
    clock.advance(10_000)
    expect(writes).toHaveLength(1) // nothing changed since
  })

  it('changes during a write are written once after it, never two writes at once', async () => {
    const clock = new FakeClock()
    const { writes, write } = manualWrite()
    const store = new StateStore({ path: '/x', clock, log: silentLogger(), write, snapshot: () => doc() })
    store.changed()
    clock.advance(200)
    store.changed()
    store.changed()
    clock.advance(1000)
    expect(writes).toHaveLength(1) // still in flight
    writes[0]!.resolve()
    await settle()
    clock.advance(199)
    expect(writes).toHaveLength(1)
    clock.advance(1)
    expect(writes).toHaveLength(2)
  })

  it('close() flushes a pending change at once and then ignores changes', async () => {
    const clock = new FakeClock()
    const { writes, write } = manualWrite()
    const store = new StateStore({ path: '/x', clock, log: silentLogger(), write, snapshot: () => doc() })
    store.changed()
    const closing = store.close()
    await settle()
    expect(writes).toHaveLength(1)
    writes[0]!.resolve()
    await closing
    store.changed()
    clock.advance(60_000)
    expect(writes).toHaveLength(1)
  })

  it('a failed write is logged and retried with backoff until it succeeds', async () => {
    const clock = new FakeClock()
    const { writes, write } = manualWrite()
    const lines: string[] = []
    const log = createLogger(
      'error',
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          lines.push((JSON.parse(chunk.toString()) as { msg: string }).msg)
          cb()
        },
      }),
    )
    const store = new StateStore({ path: '/x', clock, log, write, snapshot: () => doc() })
    store.changed()
    clock.advance(200)
    writes[0]!.reject(new Error('ENOSPC'))
    await settle()
    expect(lines).toEqual(['state not saved; will retry'])
    clock.advance(399)
    expect(writes).toHaveLength(1)
    clock.advance(1) // 200 * 2^1
    expect(writes).toHaveLength(2)
    writes[1]!.resolve()
    await settle()
    expect(store.writes).toBe(1)
  })

  it('writes a real file atomically that loadState reads back', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'wgpmp-state-'))
    try {
      const path = join(dir, 'sub', 'leases.json')
      const clock = new FakeClock(5_000, T0)
      const store = new StateStore({ path, clock, log: silentLogger(), snapshot: (now) => snapshot([lease()], 0, clock, now) })
      store.changed()
      await store.close()
      expect(await readdir(join(dir, 'sub'))).toEqual(['leases.json']) // no temp file left
      const r = await loadState(path, T0 + 1000)
      expect(r.ok).toBe(true)
      if (!r.ok || !r.state) return
      const back = restorable(r.state, new FakeClock(0), T0 + 1000)
      expect(back.leases).toHaveLength(1)
      expect(back.leases[0]?.expiresAt).toBe(3_600_000 - 1000)
      if (process.getuid?.() !== 0) {
        await chmod(path, 0)
        expect((await loadState(path, T0)).ok).toBe(false)
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('renderState', () => {
  it('renders exactly the text of JSON.stringify(snapshot), in slices, for every kind of lease', async () => {
    const clock = new FakeClock(5_000.4)
    const many = Array.from({ length: 1_234 }, (_, i) =>
      lease({
        id: i,
        externalPort: 1024 + i,
        internalPort: i % 7 === 0 ? 0 : 1024 + i,
        protocol: i % 2 ? 'udp' : 'tcp',
        origin: i % 3 === 0 ? 'pcp' : 'nat-pmp',
        createdAt: 1000.6 + i,
        expiresAt: 9_999.5 + i * 1000,
        ...(i % 3 === 0 ? { nonce: '0123456789abcdef01234567' } : {}),
        ...(i % 5 === 0 ? { client: 'fd00:8::2' } : {}),
        ...(i % 10 === 0 ? { client: '2001:db8::2', pinhole: true } : {}),
      }),
    )
    const fwd = { id: 'tcp-8080', client: 'oLCGdaDSDw-O', protocol: 'tcp' as const, external_port: 8080, internal_port: 80, created_at: 't' }
    const withStatic = [...many.slice(0, 600), lease({ origin: 'static', externalPort: 1 }), ...many.slice(600)]
    const text = await renderState(withStatic, 0, clock, T0, [fwd])
    expect(text).toBe(JSON.stringify(snapshot(many, 0, clock, T0, [fwd])) + '\n')
    expect((JSON.parse(text) as PersistedState).leases).toHaveLength(1_234)
    expect(await renderState([], 0, clock, T0)).toBe(JSON.stringify(snapshot([], 0, clock, T0)) + '\n')
    const pieces: string[] = []
    for await (const p of renderStateChunks(many, 0, clock, T0)) pieces.push(p)
    expect(pieces).toHaveLength(1 + 3 + 1) // head, 500 + 500 + 234 leases, tail
    expect(pieces.join('')).toBe(JSON.stringify(snapshot(many, 0, clock, T0)) + '\n')
  })

  it('a StateStore with a streaming render writes the whole document to disk', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'wgpmp-state-'))
    try {
      const clock = new FakeClock(5_000, T0)
      const leases = Array.from({ length: 1_100 }, (_, i) => lease({ id: i, externalPort: 2000 + i }))
      const path = join(dir, 'leases.json')
      const store = new StateStore({
        path,
        clock,
        log: silentLogger(),
        snapshot: () => snapshot(leases, 0, clock, T0),
        render: (t) => renderStateChunks(leases, 0, clock, t),
      })
      store.changed()
      await store.flush()
      expect(await readFile(path, 'utf8')).toBe(JSON.stringify(snapshot(leases, 0, clock, T0)) + '\n')
      expect(store.writes).toBe(1)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
