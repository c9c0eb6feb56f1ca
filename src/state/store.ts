/**
 * The lease state file: NAT-PMP leases and the epoch, so that a restart (or a crash) neither loses
 * a granted port nor resets the epoch (issue 5). A versioned JSON document, validated on load with
 * an ajv schema that is also its type (json-schema-to-ts), written atomically (writeFileAtomic from
 * mappings/static.ts: temp file in the same directory, fsync, rename, fsync the directory) and
 * coalesced: a burst of changes costs at most one write per `coalesceMs`.
 *
 * Times: leases hold monotonic Clock ms, which mean nothing across a restart, so the file holds
 * unix ms. toPersisted/fromPersisted convert with the clock and the wall time passed in; nothing
 * here reads the time by itself except StateStore's default `now` (Date.now), which tests replace.
 *
 * One file, one writer: this store writes the whole of `state_file`: the epoch, NAT-PMP and PCP
 * leases, and the API-created static forwards (their records come from StaticForwardStore, built
 * with fromRecords so that its saves go through here).
 */
import { open, readFile, rename } from 'node:fs/promises'
import { Ajv } from 'ajv'
import type { FromSchema, JSONSchema } from 'json-schema-to-ts'
import { DYNAMIC_ORIGINS, dynamicOrigin, type DynamicOrigin, type Lease, type Protocol } from '../core/forward.js'
import { WgpmpError } from '../core/errors.js'
import type { Logger } from '../log.js'
import type { Cancel, Clock } from '../core/clock.js'
import { writeFileAtomic } from './atomic.js'
import { storedForwardSchema, type StoredForward } from './static-store.js'

export const STATE_VERSION = 1
/** Default coalescing window: at most 5 writes a second whatever the request rate. */
export const DEFAULT_COALESCE_MS = 200
/** A state file larger than this is not read (it would be millions of leases): it is moved aside. */
export const MAX_STATE_BYTES = 64 * 1024 * 1024
/** Retry delay ceiling after failed writes (disk full, read-only): 200 ms doubling up to this. */
export const MAX_RETRY_MS = 30_000

const port = { type: 'integer', minimum: 1, maximum: 65535 } as const
const unixMs = { type: 'integer', minimum: 0, maximum: 8.64e15 } as const

export const leaseRecordSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['client', 'protocol', 'internalPort', 'externalPort', 'targetPort', 'lifetimeSeconds', 'expiresAtUnixMs', 'createdAtUnixMs'],
  properties: {
    client: { type: 'string', minLength: 2, maxLength: 45, pattern: '^[0-9A-Fa-f:.]+$', description: 'IPv4 or IPv6 text; checked again on restore.' },
    protocol: { enum: ['tcp', 'udp'] },
    internalPort: { type: 'integer', minimum: 0, maximum: 65535, description: '0 = symmetric mapping (targetPort = externalPort).' },
    externalPort: port,
    targetPort: port,
    lifetimeSeconds: { type: 'integer', minimum: 1, maximum: 4294967295 },
    expiresAtUnixMs: unixMs,
    createdAtUnixMs: unixMs,
    origin: { enum: DYNAMIC_ORIGINS, description: 'Absent in older files: nat-pmp.' },
    pinhole: { type: 'boolean', description: 'An IPv6 client with a global address: its own port, not translated.' },
    nonce: { type: 'string', pattern: '^[0-9a-f]{24}$', description: 'PCP mapping nonce (RFC 6887 §11.3).' },
    description: { type: 'string', maxLength: 256, description: 'UPnP NewPortMappingDescription (client text).' },
    peer: {
      type: 'string',
      pattern: '^[A-Za-z0-9_-]{12}$',
      description: 'Client id (hash of the public key) of the peer that held the address: restored only to the same peer (issue 10 §4). Absent in older files.',
    },
  },
} as const satisfies JSONSchema

/** A port kept for its client after its lease ended (issue 10 §3, port_hold_seconds). */
export const holdRecordSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['client', 'internalPort', 'externalPort', 'untilUnixMs'],
  properties: {
    client: leaseRecordSchema.properties.client,
    internalPort: leaseRecordSchema.properties.internalPort,
    externalPort: port,
    untilUnixMs: unixMs,
    peer: leaseRecordSchema.properties.peer,
  },
} as const satisfies JSONSchema

export const stateSchema = {
  type: 'object',
  // Unknown top-level keys are accepted (a newer minor writer) and dropped on the next write.
  required: ['version', 'epochStartedAtUnixMs', 'leases'],
  properties: {
    version: { const: STATE_VERSION },
    epochStartedAtUnixMs: { ...unixMs, description: 'Wall time the NAT-PMP epoch (seconds since start of epoch, RFC 6886 §3.6) counts from.' },
    savedAtUnixMs: unixMs,
    leases: { type: 'array', items: leaseRecordSchema },
    static_forwards: { type: 'array', items: storedForwardSchema, description: 'API-created static forwards (config-file ones are not stored).' },
    journal: {
      type: 'integer',
      minimum: 0,
      maximum: 1e15,
      description: 'The first journal generation to replay over this snapshot (state/journal.ts). Absent: 0.',
    },
    holds: { type: 'array', items: holdRecordSchema, description: 'Ports held for their clients (issue 10 §3).' },
  },
} as const satisfies JSONSchema

export type LeaseRecord = FromSchema<typeof leaseRecordSchema>
export type HoldRecord = FromSchema<typeof holdRecordSchema>
export type PersistedState = FromSchema<typeof stateSchema>

// --- pure conversions -------------------------------------------------------------------------

/** A lease read back from the file, in clock ms: what MappingTable needs to re-insert it (it assigns id; origin is 'nat-pmp'). */
export interface RestoredLease {
  readonly client: string
  readonly protocol: Protocol
  readonly internalPort: number
  readonly externalPort: number
  readonly targetPort: number
  readonly lifetimeSeconds: number
  readonly createdAt: number
  readonly expiresAt: number
  readonly origin: DynamicOrigin
  readonly nonce?: string
  readonly description?: string
  readonly pinhole?: boolean
  /** The client id of the peer the lease was granted to (absent in older files). */
  readonly peer?: string
}

/** Extra content of a snapshot beyond leases (issue 10): where journal replay starts, held ports, the peer of each lease. */
export interface SnapshotExtra {
  readonly journal?: number
  readonly holds?: readonly HoldRecord[]
  readonly peerOf?: (client: string) => string | undefined
}

/** The record for a lease, its clock-ms deadlines turned into unix ms as of (clock.now(), nowUnixMs). Pure. */
export function toPersisted(lease: Lease, clock: Clock, nowUnixMs: number, peer?: string): LeaseRecord {
  const now = clock.now()
  return {
    client: lease.client,
    protocol: lease.protocol,
    internalPort: lease.internalPort,
    externalPort: lease.externalPort,
    targetPort: lease.targetPort,
    lifetimeSeconds: lease.lifetimeSeconds,
    expiresAtUnixMs: Math.max(0, Math.round(nowUnixMs + (lease.expiresAt - now))),
    createdAtUnixMs: Math.max(0, Math.round(nowUnixMs - (now - lease.createdAt))),
    origin: dynamicOrigin(lease.origin),
    ...(lease.nonce === undefined ? {} : { nonce: lease.nonce }),
    ...(lease.description === undefined ? {} : { description: lease.description }),
    ...(lease.pinhole ? { pinhole: true } : {}),
    ...(peer === undefined ? {} : { peer }),
  }
}

/**
 * The lease for a record in clock ms as of (clock.now(), nowUnixMs), or null if it has expired
 * (expiresAtUnixMs <= nowUnixMs). If the wall clock went backwards while the daemon was down, the
 * time left is capped at the granted lifetime and createdAt at now, so a lease never outlives
 * what was granted. Pure.
 */
export function fromPersisted(rec: LeaseRecord, clock: Clock, nowUnixMs: number): RestoredLease | null {
  const left = rec.expiresAtUnixMs - nowUnixMs
  if (left <= 0) return null
  const now = clock.now()
  return {
    client: rec.client,
    protocol: rec.protocol,
    internalPort: rec.internalPort,
    externalPort: rec.externalPort,
    targetPort: rec.targetPort,
    lifetimeSeconds: rec.lifetimeSeconds,
    expiresAt: now + Math.min(left, rec.lifetimeSeconds * 1000),
    createdAt: now - Math.max(0, nowUnixMs - rec.createdAtUnixMs),
    origin: rec.origin ?? 'nat-pmp',
    ...(rec.nonce === undefined ? {} : { nonce: rec.nonce }),
    ...(rec.description === undefined ? {} : { description: rec.description }),
    ...(rec.pinhole === true ? { pinhole: true } : {}),
    ...(rec.peer === undefined ? {} : { peer: rec.peer }),
  }
}

/** Wall time of an epoch that started at clock ms epochStart. Pure. */
export const epochToUnixMs = (epochStart: number, clock: Clock, nowUnixMs: number): number => Math.max(0, Math.round(nowUnixMs - (clock.now() - epochStart)))
/**
 * Clock ms of a persisted epoch start, so that epoch seconds keep counting across the restart.
 * A start in the future (wall clock went backwards) becomes now: the epoch restarts at 0, which
 * RFC 6886 §3.6 clients read as "state lost" and answer by re-mapping. Pure.
 */
export const epochFromUnixMs = (epochStartedAtUnixMs: number, clock: Clock, nowUnixMs: number): number =>
  clock.now() - Math.max(0, nowUnixMs - epochStartedAtUnixMs)

/** The whole document: NAT-PMP and PCP leases (not static ones, in the order given), and the stored static forwards. Pure. */
export function snapshot(
  leases: Iterable<Lease>,
  epochStart: number,
  clock: Clock,
  nowUnixMs: number,
  staticForwards: readonly StoredForward[] = [],
  extra: SnapshotExtra = {},
): PersistedState {
  const out: LeaseRecord[] = []
  for (const l of leases) if (l.origin !== 'static') out.push(toPersisted(l, clock, nowUnixMs, extra.peerOf?.(l.client)))
  return {
    version: STATE_VERSION,
    epochStartedAtUnixMs: epochToUnixMs(epochStart, clock, nowUnixMs),
    savedAtUnixMs: Math.round(nowUnixMs),
    leases: out,
    static_forwards: [...staticForwards],
    ...(extra.journal === undefined ? {} : { journal: extra.journal }),
    ...(extra.holds === undefined ? {} : { holds: [...extra.holds] }),
  }
}

/** Restorable leases of a document as of now: expired ones dropped, duplicates (same protocol and external port) dropped after the first. Pure. */
export function restorable(state: PersistedState, clock: Clock, nowUnixMs: number): { leases: RestoredLease[]; expired: number; duplicates: number } {
  const seen = new Set<string>()
  const leases: RestoredLease[] = []
  let expired = 0
  let duplicates = 0
  for (const rec of state.leases) {
    const l = fromPersisted(rec, clock, nowUnixMs)
    if (!l) {
      expired++
      continue
    }
    const k = `${l.protocol}/${l.externalPort}`
    if (seen.has(k)) {
      duplicates++
      continue
    }
    seen.add(k)
    leases.push(l)
  }
  return { leases, expired, duplicates }
}

/** Leases per slice when rendering a large state: well under a millisecond of work between yields. */
const RENDER_CHUNK = 500

/**
 * One lease record as JSON text: the same keys, order and values as JSON.stringify(toPersisted(…)),
 * written out directly (4× faster; renderState's unit test holds the two equal). `now` is clock.now().
 */
function leaseJson(l: Lease, now: number, nowUnixMs: number, peer?: string): string {
  const expires = Math.max(0, Math.round(nowUnixMs + (l.expiresAt - now)))
  const created = Math.max(0, Math.round(nowUnixMs - (now - l.createdAt)))
  const origin = dynamicOrigin(l.origin)
  const tail =
    (l.nonce === undefined ? '' : `,"nonce":${JSON.stringify(l.nonce)}`) +
    (l.description === undefined ? '' : `,"description":${JSON.stringify(l.description)}`) +
    (l.pinhole ? ',"pinhole":true' : '') +
    (peer === undefined ? '' : `,"peer":${JSON.stringify(peer)}`)
  return `{"client":${JSON.stringify(l.client)},"protocol":"${l.protocol}","internalPort":${l.internalPort},"externalPort":${l.externalPort},"targetPort":${l.targetPort},"lifetimeSeconds":${l.lifetimeSeconds},"expiresAtUnixMs":${expires},"createdAtUnixMs":${created},"origin":"${origin}"${tail}}`
}

/**
 * The state file's text, exactly JSON.stringify(snapshot(…)) + newline, in pieces: the head, then
 * slices of RENDER_CHUNK leases (about 100 kB each) with a yield to the event loop between slices,
 * then the tail. The writer streams the pieces to the file, so saving 50,000 leases neither holds
 * up a request for more than a fraction of a millisecond nor builds a 10 MB string. `leases` is
 * not kept: a lease renewed or removed while rendering is written as it is when its slice is reached.
 */
export function renderStateChunks(
  leases: readonly Lease[],
  epochStart: number,
  clock: Clock,
  nowUnixMs: number,
  staticForwards: readonly StoredForward[] = [],
  extra: SnapshotExtra = {},
): AsyncGenerator<string> {
  // The clock is read now, with the wall time the caller just took, not when the pieces are
  // pulled: the writer starts pulling later (after opening the file), and the two must agree.
  const whole = JSON.stringify(snapshot([], epochStart, clock, nowUnixMs, staticForwards, extra))
  const at = whole.indexOf('"leases":[]') + '"leases":['.length
  const now = clock.now()
  return (async function* pieces(): AsyncGenerator<string> {
    yield whole.slice(0, at)
    let slice: string[] = []
    let first = true
    for (const l of leases) {
      if (l.origin === 'static') continue
      slice.push(leaseJson(l, now, nowUnixMs, extra.peerOf?.(l.client)))
      if (slice.length === RENDER_CHUNK) {
        yield (first ? '' : ',') + slice.join(',')
        first = false
        slice = []
        await new Promise((r) => setImmediate(r))
      }
    }
    if (slice.length > 0) yield (first ? '' : ',') + slice.join(',')
    yield whole.slice(at) + '\n'
  })()
}

/** renderStateChunks joined: the whole file as one string. */
export async function renderState(
  leases: readonly Lease[],
  epochStart: number,
  clock: Clock,
  nowUnixMs: number,
  staticForwards: readonly StoredForward[] = [],
  extra: SnapshotExtra = {},
): Promise<string> {
  let text = ''
  for await (const part of renderStateChunks(leases, epochStart, clock, nowUnixMs, staticForwards, extra)) text += part
  return text
}

// --- loading ----------------------------------------------------------------------------------

export type LoadResult =
  { readonly ok: true; readonly state: PersistedState | null } | { readonly ok: false; readonly error: WgpmpError; readonly movedTo: string | null }

/**
 * Reads and validates the state file. Missing file: ok with state null (first start). A file that
 * cannot be read, is too big, is not JSON or does not match the schema: not ok, with a
 * WGPMP_STATE_INVALID error naming the problem, and the file renamed to
 * `<path>.corrupt-<nowUnixMs>` (movedTo; null if the rename failed too) so the next write starts
 * clean and the bad file is kept for a human. Never rejects.
 */
export async function loadState(path: string, nowUnixMs: number): Promise<LoadResult> {
  const bad = async (why: string, cause?: unknown): Promise<LoadResult> => {
    const to = `${path}.corrupt-${Math.round(nowUnixMs)}`
    let movedTo: string | null = to
    try {
      await rename(path, to)
    } catch {
      movedTo = null
    }
    const where = movedTo ? `moved to ${movedTo}` : 'could not be moved aside'
    return {
      ok: false,
      movedTo,
      error: new WgpmpError('WGPMP_STATE_INVALID', `state file ${path}: ${why}; it was ${where} and wgpmp starts with no leases`, { cause }),
    }
  }
  let text: string
  try {
    const fh = await open(path, 'r')
    try {
      const { size } = await fh.stat()
      if (size > MAX_STATE_BYTES) return await bad(`${size} bytes is more than the ${MAX_STATE_BYTES} a state file can be`)
      text = await readFile(fh, 'utf8')
    } finally {
      await fh.close()
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { ok: true, state: null }
    return bad(`cannot read (${(e as Error).message})`, e)
  }
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (e) {
    return bad(`not valid JSON (${(e as Error).message})`, e)
  }
  const validate = new Ajv({ allErrors: true, strict: true }).compile<PersistedState>(stateSchema)
  if (!validate(doc)) {
    const why = (validate.errors ?? [])
      .slice(0, 5)
      .map((e) => `${e.instancePath || '/'} ${e.message ?? 'invalid'}`)
      .join('; ')
    return bad(`does not match the schema (${why})`, validate.errors)
  }
  return { ok: true, state: doc }
}

// --- writing ----------------------------------------------------------------------------------

export interface StateStoreOptions {
  path: string
  /** The coalescing timer, and its wall() for the snapshot time. */
  clock: Clock
  /** The document to write, read at write time (so a burst writes only the latest state). */
  snapshot: (nowUnixMs: number) => PersistedState
  log: Logger
  /**
   * Default 200 ms. 0 writes on the next turn, still one write for changes made in the same turn.
   * A function is asked at each change (the daemon widens the window as the state grows).
   */
  coalesceMs?: number | (() => number)
  /**
   * Renders the file's text instead of JSON.stringify(snapshot(now)), as one string or in pieces
   * (the daemon streams renderStateChunks, which yields to the event loop between slices of
   * leases, so a large state never blocks requests).
   */
  render?: (nowUnixMs: number) => Promise<string> | AsyncIterable<string>
  /** Default writeFileAtomic (mappings/static.ts), which takes a string or its pieces. */
  write?: (path: string, data: string | AsyncIterable<string>) => Promise<void>
  /**
   * Called before each write, before the document is rendered (issue 10: the journal rotates to a
   * new generation, which the document names). Resolves with a token handed to `done`.
   */
  prepare?: () => Promise<number>
  /** Called after a successful write with prepare's token (the journal deletes older generations). */
  done?: (token: number) => Promise<void>
}

/**
 * Coalesced, serialized writer of the lease file. changed() after every table change; at most one
 * write per coalesceMs follows, of the state at that moment. A failed write is logged and retried
 * (coalesceMs, at least 100 ms, doubling, at most 30 s apart) until one succeeds. close() writes once more if anything
 * changed and then ignores changed().
 */
export class StateStore {
  private readonly o: Required<Omit<StateStoreOptions, 'log' | 'render' | 'prepare' | 'done'>> &
    Pick<StateStoreOptions, 'render' | 'prepare' | 'done'> & { log: Logger }
  private dirty = false
  private timer: Cancel | null = null
  private writing: Promise<void> | null = null
  private failures = 0
  private closed = false
  private written = 0

  constructor(opts: StateStoreOptions) {
    this.o = {
      coalesceMs: DEFAULT_COALESCE_MS,
      write: writeFileAtomic,
      ...opts,
    }
  }

  /** Writes done so far (for tests and metrics). */
  get writes(): number {
    return this.written
  }

  /** Marks the state changed; schedules one write within coalesceMs unless one is already due. */
  changed(): void {
    if (this.closed) return
    this.dirty = true
    this.arm(this.window())
  }

  private window(): number {
    return typeof this.o.coalesceMs === 'function' ? this.o.coalesceMs() : this.o.coalesceMs
  }

  /** Writes now if anything changed (after any write in flight). Rejects if that write fails. */
  async flush(): Promise<void> {
    this.timer?.()
    this.timer = null
    if (this.writing) await this.writing.catch(() => {})
    if (this.dirty) await this.writeNow(true)
  }

  /** Final flush; later changed() calls are ignored. Never rejects (a failure is logged). */
  async close(): Promise<void> {
    if (this.closed) return
    try {
      await this.flush()
    } catch {
      // writeNow logged it
    } finally {
      this.closed = true
      this.timer?.()
      this.timer = null
    }
  }

  private arm(ms: number): void {
    if (this.timer || this.writing) return // the pending timer, or the end of the write in flight, picks the change up
    this.timer = this.o.clock.setTimer(ms, () => {
      this.timer = null
      void this.writeNow(false).catch(() => {})
    })
  }

  private async writeNow(rethrow: boolean): Promise<void> {
    this.dirty = false
    const run = async (): Promise<void> => {
      const token = this.o.prepare ? await this.o.prepare() : 0
      const now = this.o.clock.wall()
      const data = this.o.render ? await this.o.render(now) : JSON.stringify(this.o.snapshot(now)) + '\n'
      await this.o.write(this.o.path, data)
      await this.o.done?.(token)
    }
    const p = run()
    this.writing = p
    try {
      await p
      this.written++
      this.failures = 0
    } catch (err) {
      this.dirty = true
      this.failures++
      this.o.log.error({ err, path: this.o.path, failures: this.failures }, 'state not saved; will retry')
      if (rethrow) throw err
    } finally {
      this.writing = null
      if (this.dirty && !this.closed) {
        this.arm(this.failures === 0 ? this.window() : Math.min(MAX_RETRY_MS, Math.max(this.window(), 100) * 2 ** this.failures))
      }
    }
  }
}
