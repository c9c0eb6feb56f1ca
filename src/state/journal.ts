/**
 * The lease journal (issue 10 §2): an append-only log of lease changes, so that a reply is sent
 * only once what it promises is on disk. Built as a database's write-ahead log:
 *
 * - Records are framed: u32 length (big-endian) of the payload, u32 CRC-32 of the payload, then
 *   the payload (UTF-8 JSON). A crash can tear only the last record (its write was never
 *   acknowledged, so no reply depended on it): replay stops there without complaint. A bad record
 *   with valid records after it is corruption, reported as such.
 * - Group commit: stage() queues a record (synchronously, at the moment the table changes);
 *   sync() resolves once every record staged before the call is written and fdatasync'ed. Records
 *   staged while a write is in flight go into the next write: one write and ONE fdatasync per
 *   batch, whatever the number of requests in it, as the kernel's group commit (drivers/batcher.ts)
 *   sends one batch for everything that arrived while the previous one was in flight.
 * - Generations: records go to `<state_file>.journal.<gen>`. Compaction (the snapshot written by
 *   StateStore) first rotates to gen+1, writes the snapshot naming gen+1 as where replay starts,
 *   and then deletes the older files. Replay = snapshot + every journal file from its gen on, in
 *   order. Records are whole-lease puts and deletes by key, so replaying one whose effect is
 *   already in the snapshot changes nothing (idempotent).
 * - A failed write (disk full, read-only) never fails a request: the kernel already holds the
 *   change, and failing the reply would leave table and kernel disagreeing. It is logged, the
 *   records are kept for the next attempt, and `onFailure` asks for a snapshot, which makes
 *   everything durable again if it succeeds.
 */
import { open, readdir, readFile, stat, unlink, type FileHandle } from 'node:fs/promises'
import { basename, dirname } from 'node:path'
import { Ajv } from 'ajv'
import type { FromSchema, JSONSchema } from 'json-schema-to-ts'
import { WgpmpError } from '../core/errors.js'
import type { Logger } from '../log.js'
import { holdRecordSchema, leaseRecordSchema, type HoldRecord, type LeaseRecord, type PersistedState } from './store.js'

// --- framing ----------------------------------------------------------------------------------

/** Bytes before each payload: length and CRC-32. */
export const FRAME_HEADER = 8
/** A record is one lease (a few hundred bytes); anything above this is a corrupt length field. */
export const MAX_RECORD_BYTES = 64 * 1024

const CRC_TABLE = (() => {
  const t = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    t[n] = c >>> 0
  }
  return t
})()

/** CRC-32 (IEEE 802.3, as zlib's crc32, which Node 18 does not export). */
export function crc32(buf: Uint8Array): number {
  let c = 0xffffffff
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

export const journalEntrySchema = {
  oneOf: [
    {
      type: 'object',
      additionalProperties: false,
      required: ['op', 'lease'],
      properties: { op: { const: 'put' }, lease: leaseRecordSchema },
    },
    {
      type: 'object',
      additionalProperties: false,
      required: ['op', 'client', 'protocol', 'internalPort'],
      properties: {
        op: { const: 'del' },
        client: leaseRecordSchema.properties.client,
        protocol: leaseRecordSchema.properties.protocol,
        internalPort: leaseRecordSchema.properties.internalPort,
        hold: holdRecordSchema,
      },
    },
    {
      type: 'object',
      additionalProperties: false,
      required: ['op', 'client', 'internalPort'],
      properties: { op: { const: 'unhold' }, client: leaseRecordSchema.properties.client, internalPort: leaseRecordSchema.properties.internalPort },
    },
  ],
} as const satisfies JSONSchema

/**
 * put: the lease as it now is (created, renewed, restored). del: the lease of (client, protocol,
 * internal port) is gone; `hold` is the port kept for its client (issue 10 §3). unhold: the hold
 * of (client, internal port) ended (its port went to someone else).
 */
export type JournalEntry = FromSchema<typeof journalEntrySchema>

/** One framed record. */
export function encodeRecord(entry: JournalEntry): Buffer {
  const payload = Buffer.from(JSON.stringify(entry), 'utf8')
  const out = Buffer.allocUnsafe(FRAME_HEADER + payload.length)
  out.writeUInt32BE(payload.length, 0)
  out.writeUInt32BE(crc32(payload), 4)
  payload.copy(out, FRAME_HEADER)
  return out
}

export interface DecodedJournal {
  readonly entries: JournalEntry[]
  /** The file ends inside a record (a write torn by a crash): the bytes from here on were ignored. */
  readonly tornAt: number | null
  /** A bad record followed by more data: not a torn tail but damage (the rest was ignored). */
  readonly corruptAt: number | null
}

let validateEntry: ((v: unknown) => v is JournalEntry) | null = null

/**
 * Decodes the records of one journal file. Never throws. A record that is cut short, or the last
 * record failing its checksum, is a torn tail (tornAt); any other bad record is corruption
 * (corruptAt). Decoding stops at the first bad record either way.
 */
export function decodeRecords(buf: Uint8Array): DecodedJournal {
  validateEntry ??= new Ajv({ strict: true, allErrors: false }).compile<JournalEntry>(journalEntrySchema)
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength)
  const entries: JournalEntry[] = []
  let at = 0
  while (at < b.length) {
    if (b.length - at < FRAME_HEADER) return { entries, tornAt: at, corruptAt: null }
    const len = b.readUInt32BE(at)
    const end = at + FRAME_HEADER + len
    if (len > MAX_RECORD_BYTES) return { entries, tornAt: null, corruptAt: at }
    if (end > b.length) return { entries, tornAt: at, corruptAt: null }
    const payload = b.subarray(at + FRAME_HEADER, end)
    let entry: unknown = null
    if (crc32(payload) === b.readUInt32BE(at + 4)) {
      try {
        entry = JSON.parse(payload.toString('utf8'))
      } catch {
        entry = null
      }
    }
    if (entry === null || !validateEntry(entry)) {
      // The last record of the file with a bad checksum is a torn write (the length landed, not all of the payload).
      return end === b.length ? { entries, tornAt: at, corruptAt: null } : { entries, tornAt: null, corruptAt: at }
    }
    entries.push(entry)
    at = end
  }
  return { entries, tornAt: null, corruptAt: null }
}

// --- files ------------------------------------------------------------------------------------

export const journalPath = (statePath: string, gen: number): string => `${statePath}.journal.${gen}`

/** The journal generations present next to statePath, ascending. */
export async function journalGenerations(statePath: string): Promise<number[]> {
  const prefix = `${basename(statePath)}.journal.`
  let names: string[]
  try {
    names = await readdir(dirname(statePath))
  } catch {
    return []
  }
  return names
    .filter((n) => n.startsWith(prefix) && /^\d{1,15}$/.test(n.slice(prefix.length)))
    .map((n) => Number(n.slice(prefix.length)))
    .sort((a, b) => a - b)
}

/**
 * Refuses a state path (or journal file) that exists and is not a regular file: opening a FIFO
 * blocks until a writer comes (the daemon hung before listening), a device is not ours to write.
 * Names `state_file` in the message. A missing file is fine (first start).
 */
export async function checkStatePath(statePath: string): Promise<void> {
  const paths = [statePath, ...(await journalGenerations(statePath)).map((g) => journalPath(statePath, g))]
  for (const p of paths) {
    let st
    try {
      st = await stat(p)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue
      throw new WgpmpError('WGPMP_CONFIG_INVALID', `state_file: cannot stat ${p} (${(e as Error).message})`, { cause: e })
    }
    if (!st.isFile()) {
      const kind = st.isFIFO()
        ? 'a FIFO'
        : st.isDirectory()
          ? 'a directory'
          : st.isCharacterDevice() || st.isBlockDevice()
            ? 'a device'
            : st.isSocket()
              ? 'a socket'
              : 'not a regular file'
      throw new WgpmpError(
        'WGPMP_CONFIG_INVALID',
        `state_file: ${p} is ${kind}, not a regular file; point state_file at a file (e.g. /var/lib/wgpmp/state.json)`,
      )
    }
  }
}

export interface ReadJournals {
  readonly entries: JournalEntry[]
  /** Generations read, ascending. */
  readonly generations: number[]
  /** The highest generation present (or fromGen - 1 with none): the daemon writes to the next one. */
  readonly lastGen: number
  /** Torn tails (normal after a crash), as "file@offset". */
  readonly torn: string[]
  /** Damage: "file@offset" of a bad record with data after it. */
  readonly corrupt: string[]
}

/** Reads every journal file of generation >= fromGen in order. Never rejects; an unreadable file counts as corrupt. */
export async function readJournals(statePath: string, fromGen: number): Promise<ReadJournals> {
  const gens = (await journalGenerations(statePath)).filter((g) => g >= fromGen)
  const entries: JournalEntry[] = []
  const torn: string[] = []
  const corrupt: string[] = []
  for (const g of gens) {
    const p = journalPath(statePath, g)
    let buf: Buffer
    try {
      buf = await readFile(p)
    } catch (e) {
      corrupt.push(`${p} (${(e as Error).message})`)
      continue
    }
    const d = decodeRecords(buf)
    entries.push(...d.entries)
    if (d.tornAt !== null) torn.push(`${p}@${d.tornAt}`)
    if (d.corruptAt !== null) corrupt.push(`${p}@${d.corruptAt}`)
  }
  return { entries, generations: gens, lastGen: gens.length > 0 ? gens[gens.length - 1]! : fromGen - 1, torn, corrupt }
}

const leaseKey = (client: string, protocol: string, internalPort: number): string => `${client}/${protocol}/${internalPort}`
const holdKey = (client: string, internalPort: number): string => `${client}/${internalPort}`

/**
 * The state after replaying entries over a snapshot: leases and holds by key, in the order last
 * written. Pure. A put replaces the lease of its key and ends any hold on its key or its port; a
 * del removes it and records its hold; an unhold removes a hold.
 */
export function applyJournal(
  state: Pick<PersistedState, 'leases' | 'holds'>,
  entries: readonly JournalEntry[],
): { leases: LeaseRecord[]; holds: HoldRecord[] } {
  const leases = new Map<string, LeaseRecord>()
  const holds = new Map<string, HoldRecord>()
  for (const l of state.leases) leases.set(leaseKey(l.client, l.protocol, l.internalPort), l)
  for (const h of state.holds ?? []) holds.set(holdKey(h.client, h.internalPort), h)
  const unholdPort = (externalPort: number, family6: boolean): void => {
    for (const [k, h] of holds) if (h.externalPort === externalPort && h.client.includes(':') === family6) holds.delete(k)
  }
  for (const e of entries) {
    if (e.op === 'put') {
      const k = leaseKey(e.lease.client, e.lease.protocol, e.lease.internalPort)
      leases.delete(k) // re-inserted last: the order of the latest writes
      leases.set(k, e.lease)
      holds.delete(holdKey(e.lease.client, e.lease.internalPort))
      if (e.lease.pinhole !== true) unholdPort(e.lease.externalPort, e.lease.client.includes(':'))
    } else if (e.op === 'del') {
      leases.delete(leaseKey(e.client, e.protocol, e.internalPort))
      if (e.hold) holds.set(holdKey(e.hold.client, e.hold.internalPort), e.hold)
    } else {
      holds.delete(holdKey(e.client, e.internalPort))
    }
  }
  return { leases: [...leases.values()], holds: [...holds.values()] }
}

// --- the writer -------------------------------------------------------------------------------

export interface JournalOptions {
  statePath: string
  /** The generation to write first (one above every file read at start). */
  gen: number
  log: Logger
  /** A write or fdatasync failed: the owner should write a snapshot (which covers every staged record). */
  onFailure?: () => void
  /** Test hook: called around each batch (bytes, records). */
  onBatch?: (bytes: number, records: number) => void
}

interface Waiter {
  seq: number
  resolve: () => void
}

export class Journal {
  private fh: FileHandle | null = null
  private opening: Promise<FileHandle> | null = null
  private gen: number
  private pending: Buffer[] = []
  private staged = 0
  private durable = 0
  private waiters: Waiter[] = []
  private running: Promise<void> | null = null
  private failing = false
  private closed = false
  private bytesInGen = 0
  /** fdatasync calls so far (tests, metrics). */
  syncs = 0

  constructor(private readonly o: JournalOptions) {
    this.gen = o.gen
  }

  /** The generation records are written to now. */
  get generation(): number {
    return this.gen
  }

  /** Bytes written to the current generation (the compaction trigger). */
  get bytes(): number {
    return this.bytesInGen
  }

  /** Queues a record; it is written by the next sync() (or the one in flight's successor). Synchronous. */
  stage(entry: JournalEntry): void {
    if (this.closed) return
    this.pending.push(encodeRecord(entry))
    this.staged++
  }

  /** Resolves once every record staged before this call is on disk (or its write failed: logged). Never rejects. */
  sync(): Promise<void> {
    const seq = this.staged
    if (seq <= this.durable) return Promise.resolve()
    const p = new Promise<void>((resolve) => this.waiters.push({ seq, resolve }))
    this.running ??= this.drain().finally(() => {
      this.running = null
    })
    return p
  }

  /**
   * Starts generation gen+1 (after the write in flight): records staged from now on go there.
   * Resolves with the new generation, which the snapshot about to be written names.
   */
  async rotate(): Promise<number> {
    // Bounded: a drain ends once nothing is pending; the swap below is synchronous after the last one.
    for (let i = 0; i < 1000 && this.running; i++) await this.running
    const old = this.fh
    this.fh = null
    this.opening = null
    this.gen++
    this.bytesInGen = 0
    await old?.close().catch(() => {})
    return this.gen
  }

  /** Deletes the files of generations below gen (their content is in a durable snapshot). */
  async removeBefore(gen: number): Promise<void> {
    for (const g of await journalGenerations(this.o.statePath)) {
      if (g < gen) await unlink(journalPath(this.o.statePath, g)).catch(() => {})
    }
  }

  /** Writes and syncs what is staged, then closes. Later stage() calls are ignored. */
  async close(): Promise<void> {
    if (this.closed) return
    await this.sync()
    this.closed = true
    await this.running
    await this.fh?.close().catch(() => {})
    this.fh = null
  }

  private file(): Promise<FileHandle> {
    if (this.fh) return Promise.resolve(this.fh)
    this.opening ??= open(journalPath(this.o.statePath, this.gen), 'a', 0o600).then((fh) => (this.fh = fh))
    return this.opening
  }

  private async drain(): Promise<void> {
    // Bounded: each turn writes everything pending; it loops only while requests keep staging.
    while (this.pending.length > 0 || this.waiters.some((w) => w.seq > this.durable)) {
      const batch = this.pending
      this.pending = []
      const upTo = this.staged
      const data = batch.length === 1 ? batch[0]! : Buffer.concat(batch)
      try {
        const fh = await this.file()
        for (let off = 0; off < data.length;) {
          const { bytesWritten } = await fh.write(data, off, data.length - off)
          off += bytesWritten
        }
        await fh.datasync()
        this.syncs++
        this.bytesInGen += data.length
        this.o.onBatch?.(data.length, batch.length)
        if (this.failing) this.o.log.info({ gen: this.gen }, 'journal writes work again')
        this.failing = false
      } catch (err) {
        // Keep the records for the next attempt (a torn partial write is skipped at replay only
        // if it is last; the snapshot asked for below supersedes the file anyway).
        this.pending = [...batch, ...this.pending]
        // A new file for the retry, so that a partly written record stays the tail of this one.
        const fh = this.fh
        this.fh = null
        this.opening = null
        this.gen++
        this.bytesInGen = 0
        await fh?.close().catch(() => {})
        if (!this.failing)
          this.o.log.error({ err, path: journalPath(this.o.statePath, this.gen) }, 'journal write failed; replies go out without it until a snapshot succeeds')
        this.failing = true
        this.o.onFailure?.()
      }
      // Resolved either way: a reply is never held hostage by a broken disk (see the header).
      this.durable = upTo
      const left: Waiter[] = []
      for (const w of this.waiters) {
        if (w.seq <= upTo) w.resolve()
        else left.push(w)
      }
      this.waiters = left
      if (this.failing) return
    }
  }
}
