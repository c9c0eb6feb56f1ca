/** Issue 10 §2: the lease journal: framing, torn tails, group commit, replay, and restarts without a final save. */
import { execFileSync } from 'node:child_process'
import { mkdtemp, readFile, readdir, rm, truncate, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { silentLogger } from '../../../src/log.js'
import { loadDurableState } from '../../../src/state/durable.js'
import {
  applyJournal,
  checkStatePath,
  crc32,
  decodeRecords,
  encodeRecord,
  Journal,
  journalPath,
  readJournals,
  type JournalEntry,
} from '../../../src/state/journal.js'
import type { LeaseRecord } from '../../../src/state/store.js'
import { encodeRequest } from '../../../src/protocol/natpmp.js'
import { A, startTestDaemon, type TestDaemon } from '../../helpers/daemon.js'

const T0 = 1_760_000_000_000
const rec = (o: Partial<LeaseRecord> = {}): LeaseRecord => ({
  client: '10.8.0.2',
  protocol: 'tcp',
  internalPort: 8080,
  externalPort: 40001,
  targetPort: 8080,
  lifetimeSeconds: 7200,
  expiresAtUnixMs: T0 + 60_000,
  createdAtUnixMs: T0 - 1000,
  origin: 'nat-pmp',
  ...o,
})
const put = (o: Partial<LeaseRecord> = {}): JournalEntry => ({ op: 'put', lease: rec(o) })
const dirs: string[] = []
async function tmp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'wgpmp-journal-'))
  dirs.push(d)
  return d
}
const daemons: TestDaemon[] = []
afterEach(async () => {
  for (const t of daemons.splice(0)) await t.stop().catch(() => {})
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

describe('framing', () => {
  it('crc32 matches the IEEE check value', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926)
  })
  it('round-trips records', () => {
    const entries: JournalEntry[] = [put(), { op: 'del', client: '10.8.0.2', protocol: 'tcp', internalPort: 8080 }, put({ internalPort: 0, targetPort: 40001 })]
    const d = decodeRecords(Buffer.concat(entries.map(encodeRecord)))
    expect(d).toEqual({ entries, tornAt: null, corruptAt: null })
  })
  it('a file cut at every byte offset of its last record replays every record before it, as a torn tail', () => {
    const first = [put({ externalPort: 40001 }), put({ internalPort: 9000, targetPort: 9000, externalPort: 40002 })]
    const head = Buffer.concat(first.map(encodeRecord))
    const last = encodeRecord(put({ internalPort: 9001, targetPort: 9001, externalPort: 40003 }))
    const whole = Buffer.concat([head, last])
    for (let cut = head.length; cut < whole.length; cut++) {
      const d = decodeRecords(whole.subarray(0, cut))
      expect(d.entries, `cut at ${cut}`).toEqual(first)
      expect(d.corruptAt, `cut at ${cut}`).toBeNull()
      expect(d.tornAt, `cut at ${cut}`).toBe(cut === head.length ? null : head.length)
    }
    expect(decodeRecords(whole).entries).toHaveLength(3)
  })
  it('a damaged last record is a torn tail; a damaged record with records after it is corruption', () => {
    const recs = [put({ externalPort: 40001 }), put({ internalPort: 9000, targetPort: 9000, externalPort: 40002 })].map(encodeRecord)
    const lastBad = Buffer.concat(recs)
    lastBad[lastBad.length - 3]! ^= 0x55
    expect(decodeRecords(lastBad)).toMatchObject({ tornAt: recs[0]!.length, corruptAt: null })
    const midBad = Buffer.concat(recs)
    midBad[12]! ^= 0x55
    expect(decodeRecords(midBad)).toEqual({ entries: [], tornAt: null, corruptAt: 0 })
  })
})

describe('replay', () => {
  it('applies puts and deletes by key over the snapshot, idempotently', () => {
    const snap = { leases: [rec({ externalPort: 40001 }), rec({ internalPort: 9000, targetPort: 9000, externalPort: 40002 })] }
    const entries: JournalEntry[] = [
      { op: 'del', client: '10.8.0.2', protocol: 'tcp', internalPort: 9000 },
      put({ externalPort: 40001, expiresAtUnixMs: T0 + 120_000 }),
      put({ client: '10.8.0.3', externalPort: 40005 }),
    ]
    const once = applyJournal(snap, entries)
    expect(once.leases.map((l) => `${l.client}/${l.internalPort}->${l.externalPort}@${l.expiresAtUnixMs - T0}`)).toEqual([
      '10.8.0.2/8080->40001@120000',
      '10.8.0.3/8080->40005@60000',
    ])
    expect(applyJournal({ leases: once.leases }, entries).leases).toEqual(once.leases)
  })
})

describe('Journal writer', () => {
  it('group-commits: 200 changes staged by concurrent requests cost a handful of fdatasyncs, and all are on disk when sync resolves', async () => {
    const dir = await tmp()
    const path = join(dir, 'state.json')
    const j = new Journal({ statePath: path, gen: 0, log: silentLogger() })
    const waits: Promise<void>[] = []
    for (let i = 0; i < 200; i++) {
      j.stage(put({ internalPort: 1000 + i, targetPort: 1000 + i, externalPort: 20000 + i }))
      waits.push(j.sync())
    }
    await Promise.all(waits)
    expect(j.syncs).toBeGreaterThanOrEqual(1)
    expect(j.syncs).toBeLessThanOrEqual(3)
    const r = await readJournals(path, 0)
    expect(r.entries).toHaveLength(200)
    await j.close()
  })
  it('rotate starts a new generation; removeBefore deletes the older files', async () => {
    const dir = await tmp()
    const path = join(dir, 'state.json')
    const j = new Journal({ statePath: path, gen: 3, log: silentLogger() })
    j.stage(put())
    await j.sync()
    expect(await j.rotate()).toBe(4)
    j.stage(put({ externalPort: 40009 }))
    await j.sync()
    await j.removeBefore(4)
    expect((await readdir(dir)).sort()).toEqual(['state.json.journal.4'])
    expect((await readJournals(path, 0)).entries).toEqual([put({ externalPort: 40009 })])
    await j.close()
  })
})

describe('loading at start', () => {
  it('a FIFO as state_file is refused, naming state_file, instead of hanging', async () => {
    const dir = await tmp()
    const path = join(dir, 'state.json')
    execFileSync('mkfifo', [path])
    await expect(checkStatePath(path)).rejects.toThrow(/^state_file: .* is a FIFO/)
    await expect(loadDurableState(path, T0)).rejects.toMatchObject({ code: 'WGPMP_CONFIG_INVALID' })
  })
  it('a directory as state_file is refused too', async () => {
    const dir = await tmp()
    await expect(checkStatePath(dir)).rejects.toThrow(/state_file: .* is a directory/)
  })
  it('a journal without its snapshot: leases replayed, epoch reset with the reason', async () => {
    const dir = await tmp()
    const path = join(dir, 'state.json')
    await writeFile(journalPath(path, 2), encodeRecord(put()))
    const l = await loadDurableState(path, T0)
    expect(l.state?.leases).toEqual([rec()])
    expect(l.lost).toMatch(/missing but its journal is there/)
    expect(l.nextGen).toBe(3)
  })
  it('nothing at all: a fresh start, epoch from 0', async () => {
    const dir = await tmp()
    const l = await loadDurableState(join(dir, 'state.json'), T0)
    expect(l).toMatchObject({ state: null, fresh: true, nextGen: 0 })
  })
})

// --- the daemon: acknowledged leases survive a crash (no close, no final save) ---------------------

const map = (op: 1 | 2, internalPort: number, lifetime: number) => encodeRequest({ op, internalPort, suggestedExternalPort: 0, lifetimeSeconds: lifetime })

describe('daemon: an acknowledged lease is on disk before its reply', () => {
  it('after a crash right after the replies (no snapshot written), a restart restores every lease and the epoch continues', async () => {
    const t = await startTestDaemon()
    daemons.push(t)
    const ports: number[] = []
    for (let i = 0; i < 20; i++) ports.push((await t.a.send(map(2, 7000 + i, 3600))).externalPort!)
    // The snapshot is written at most every 10 s: none yet (the fake clock has not moved).
    const snap = JSON.parse(await readFile(t.stateFile, 'utf8')) as { leases: unknown[] }
    expect(snap.leases).toHaveLength(0)
    // "kill -9": the first daemon is simply abandoned (its sockets closed so the test ends).
    t.a.close()
    t.b.close()
    t.wall.t += 5_000
    const t2 = await startTestDaemon({}, {}, { stateFile: t.stateFile, wall: t.wall })
    daemons.push(t2)
    expect(t2.driver.dump()).toEqual(ports.map((p, i) => `tcp/${p} -> ${A}:${7000 + i}`).sort())
    const renewed = await t2.a.send(map(2, 7003, 3600))
    expect(renewed.externalPort).toBe(ports[3])
    expect(renewed.epochSeconds).toBeGreaterThanOrEqual(5)
  })
  it('a deleted state file and journal restart the epoch at 0', async () => {
    const t = await startTestDaemon()
    daemons.push(t)
    await t.a.send(map(2, 7000, 3600))
    t.wall.t += 60_000
    t.clock.advance(60_000)
    const before = await t.a.send(map(2, 7000, 3600))
    expect(before.epochSeconds).toBeGreaterThanOrEqual(60)
    await t.stop()
    daemons.pop()
    const dir = join(t.stateFile, '..')
    for (const n of await readdir(dir)) await unlink(join(dir, n))
    const t2 = await startTestDaemon({}, {}, { stateFile: t.stateFile, wall: t.wall })
    daemons.push(t2)
    expect((await t2.a.send(map(2, 7000, 3600))).epochSeconds).toBe(0)
  })
  it('a torn tail of the journal (a crash mid-write) does not stop the restart', async () => {
    const t = await startTestDaemon()
    daemons.push(t)
    const p1 = (await t.a.send(map(2, 7000, 3600))).externalPort!
    await t.a.send(map(2, 7001, 3600))
    t.a.close()
    t.b.close()
    const gens = (await readdir(join(t.stateFile, '..'))).filter((n) => n.includes('.journal.'))
    expect(gens).toHaveLength(1)
    const jp = join(t.stateFile, '..', gens[0]!)
    const size = (await readFile(jp)).length
    await truncate(jp, size - 5)
    const t2 = await startTestDaemon({}, {}, { stateFile: t.stateFile, wall: t.wall })
    daemons.push(t2)
    expect(t2.driver.dump()).toEqual([`tcp/${p1} -> ${A}:7000`])
  })
})
