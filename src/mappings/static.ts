/**
 * Static forwards: operator-defined, per-client, never expiring. Spec parsing (`8080:80/tcp`,
 * `27015-27030/udp`, `443/both` and the API body form), the state file they survive restarts in,
 * and StaticForwards, which reserves their ports in the lease table (through StaticSink), commits
 * them to the kernel in one batch and persists them.
 *
 * A range is stored as one interval (first..last) but installed as one map element per port and
 * protocol, all in one driver batch. Why per port rather than an nft interval element:
 * - the DNAT map is keyed by (protocol . port) and shared with NAT-PMP leases, which are single
 *   ports; an interval map would make every lease delete split or re-add intervals;
 * - `external:internal` ranges with an offset (27015-27030 -> 37015-37030) cannot be one element:
 *   an nft map value is one port, so each port needs its own target anyway;
 * - the lease table's per-port ownership (one owner per external port, RFC 6886 §3.3) then blocks
 *   NAT-PMP from every port of a range with no new code path.
 * A 1000-port range is 1000 elements (2000 for "both") in a single `nft -j` batch: one command.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { Ajv } from 'ajv'
import type { FromSchema, JSONSchema } from 'json-schema-to-ts'
import type { ForwardChange, Protocol } from '../core/forward.js'
import { WgpmpError } from '../core/errors.js'
import type { Logger } from '../log.js'

export type StaticProtocol = Protocol | 'both'

/** Inclusive port interval; first === last for a single port. */
export interface PortRange {
  readonly first: number
  readonly last: number
}

export interface StaticForwardSpec {
  readonly protocol: StaticProtocol
  readonly external: PortRange
  /** Same length as external. */
  readonly internal: PortRange
}

export interface StaticForward extends StaticForwardSpec {
  /** Stable and URL-safe: protocol and external ports, e.g. "tcp-8080", "udp-27015-27030". */
  readonly id: string
  /** The client id (see wireguard/peers.ts clientId), not an address: addresses can change. */
  readonly client: string
  /** config: from the config file (not stored, not deletable through the API); api: stored in the state file. */
  readonly source: 'config' | 'api'
  /** ISO 8601. */
  readonly createdAt: string
}

// --- parsing ----------------------------------------------------------------------------------

const PORT_OR_RANGE_PATTERN = '^[1-9][0-9]{0,4}(-[1-9][0-9]{0,4})?$'
const portOrRange = {
  oneOf: [
    { type: 'integer', minimum: 1, maximum: 65535 },
    { type: 'string', pattern: PORT_OR_RANGE_PATTERN, maxLength: 11 },
  ],
} as const

/** The API body (and the object form in the config file). */
export const staticForwardBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['protocol', 'external_port'],
  properties: {
    protocol: { enum: ['tcp', 'udp', 'both'], description: 'both = one forward per protocol, same ports.' },
    external_port: { ...portOrRange, description: 'Port (8080) or range ("27015-27030") on the public address.' },
    internal_port: { ...portOrRange, description: 'Port or range on the client; defaults to external_port. A range must be as long as the external one.' },
  },
} as const satisfies JSONSchema

export type StaticForwardBody = FromSchema<typeof staticForwardBodySchema>

export type ParseResult = { readonly ok: true; readonly spec: StaticForwardSpec } | { readonly ok: false; readonly error: string }

function parseRange(s: string | number, what: string): PortRange | string {
  const text = String(s)
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text)
  if (!m) return `${what}: ${JSON.stringify(text)} is not a port or a range like 27015-27030`
  const first = Number(m[1])
  const last = m[2] === undefined ? first : Number(m[2])
  if (first < 1 || first > 65535 || last < 1 || last > 65535) return `${what}: ports must be 1..65535`
  if (first > last) return `${what}: range ${first}-${last} is reversed`
  return { first, last }
}

function makeSpec(protocol: StaticProtocol, ext: string | number, int: string | number | undefined): ParseResult {
  const external = parseRange(ext, 'external_port')
  if (typeof external === 'string') return { ok: false, error: external }
  const internal = int === undefined ? external : parseRange(int, 'internal_port')
  if (typeof internal === 'string') return { ok: false, error: internal }
  if (internal.last - internal.first !== external.last - external.first) {
    return { ok: false, error: `internal_port: range ${formatRange(internal)} has ${rangeLength(internal)} ports, external_port ${formatRange(external)} has ${rangeLength(external)}` }
  }
  return { ok: true, spec: { protocol, external, internal } }
}

/**
 * Parses the compact form `EXT[:INT][/PROTO]`: `8080:80/tcp`, `27015-27030/udp`, `443/both`,
 * `6881` (protocol defaults to both, as in Pritunl's syntax). Never throws.
 */
export function parseForwardSpec(text: string): ParseResult {
  const m = /^\s*([0-9-]+)(?::([0-9-]+))?(?:\/([a-z]+))?\s*$/i.exec(text)
  if (!m) return { ok: false, error: `${JSON.stringify(text)}: expected EXT[:INT][/tcp|udp|both], e.g. 8080:80/tcp or 27015-27030/udp` }
  const proto = (m[3] ?? 'both').toLowerCase()
  if (proto !== 'tcp' && proto !== 'udp' && proto !== 'both') return { ok: false, error: `${JSON.stringify(text)}: protocol must be tcp, udp or both` }
  return makeSpec(proto, m[1]!, m[2])
}

/** Turns a schema-valid body into a spec (checks order and lengths). Never throws. */
export function specFromBody(body: StaticForwardBody): ParseResult {
  return makeSpec(body.protocol, body.external_port, body.internal_port)
}

export const rangeLength = (r: PortRange): number => r.last - r.first + 1
/** 8080 or "27015-27030" (the API's representation). */
export const formatRange = (r: PortRange): number | string => (r.first === r.last ? r.first : `${r.first}-${r.last}`)
/** Compact form, e.g. "8080:80/tcp", "27015-27030/udp". */
export const formatSpec = (s: StaticForwardSpec): string =>
  `${formatRange(s.external)}${s.internal.first === s.external.first ? '' : `:${formatRange(s.internal)}`}/${s.protocol}`
export const protocolsOf = (p: StaticProtocol): Protocol[] => (p === 'both' ? ['tcp', 'udp'] : [p])
/** The stable id of a forward: external ports are exclusive, so protocol + external range is unique. */
export const forwardId = (s: StaticForwardSpec): string => `${s.protocol}-${s.external.first}${s.external.first === s.external.last ? '' : `-${s.external.last}`}`

/** Do two specs claim a common (protocol, external port)? */
export function overlaps(a: StaticForwardSpec, b: StaticForwardSpec): boolean {
  const shareProto = protocolsOf(a.protocol).some((p) => protocolsOf(b.protocol).includes(p))
  return shareProto && a.external.first <= b.external.last && b.external.first <= a.external.last
}

// --- the table side ---------------------------------------------------------------------------

/**
 * What StaticForwards needs from the lease table (MappingTable implements it; see the report for
 * the proposed methods). Both calls are synchronous and in-memory; the kernel is changed by
 * committing the returned changes.
 */
export interface StaticSink {
  /**
   * Reserves (protocol, externalPort) for address, forwarding to internalPort, with no expiry.
   * Idempotent: the same static forward already there is ok with no changes. Fails when the port
   * is held by a NAT-PMP lease or another static forward ('taken') or is reserved, e.g. the
   * WireGuard listen port ('reserved'). The lease range (port_forward_min/max_port) does not apply.
   */
  addStatic(address: string, protocol: Protocol, externalPort: number, internalPort: number): StaticSinkOutcome
  /** Releases a static reservation; a port not held statically by address is a no-op (no changes). */
  removeStatic(address: string, protocol: Protocol, externalPort: number): { readonly changes: readonly ForwardChange[]; undo(): void }
}

export type StaticSinkOutcome =
  | { readonly ok: true; readonly changes: readonly ForwardChange[]; undo(): void }
  | { readonly ok: false; readonly reason: 'taken' | 'reserved' }

export interface Conflict {
  readonly protocol: Protocol
  readonly port: number
  readonly reason: 'taken' | 'reserved'
  /** Set when the holder is another static forward. */
  readonly holder?: string
}

/** Reserves every port of spec for address, all or nothing. Ok: the changes (one batch) and an undo. */
export function reserveStatic(sink: StaticSink, address: string, spec: StaticForwardSpec):
  { ok: true; changes: ForwardChange[]; undo(): void } | { ok: false; conflict: Conflict } {
  const undos: (() => void)[] = []
  const changes: ForwardChange[] = []
  const undo = (): void => {
    for (const u of undos.reverse()) u()
  }
  for (const protocol of protocolsOf(spec.protocol)) {
    for (let p = spec.external.first; p <= spec.external.last; p++) {
      const r = sink.addStatic(address, protocol, p, spec.internal.first + (p - spec.external.first))
      if (!r.ok) {
        undo()
        return { ok: false, conflict: { protocol, port: p, reason: r.reason } }
      }
      undos.push(() => r.undo())
      changes.push(...r.changes)
    }
  }
  return { ok: true, changes, undo }
}

/** Releases every port of spec held by address. */
export function releaseStatic(sink: StaticSink, address: string, spec: StaticForwardSpec): { changes: ForwardChange[]; undo(): void } {
  const undos: (() => void)[] = []
  const changes: ForwardChange[] = []
  for (const protocol of protocolsOf(spec.protocol)) {
    for (let p = spec.external.first; p <= spec.external.last; p++) {
      const r = sink.removeStatic(address, protocol, p)
      undos.push(() => r.undo())
      changes.push(...r.changes)
    }
  }
  return { changes, undo: () => { for (const u of undos.reverse()) u() } }
}

// --- the state file ---------------------------------------------------------------------------

/** One API-created static forward as stored in the state file (state/store.ts embeds it). */
export const storedForwardSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'client', 'protocol', 'external_port', 'internal_port', 'created_at'],
  properties: {
    id: { type: 'string' },
    client: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' },
    protocol: { enum: ['tcp', 'udp', 'both'] },
    external_port: portOrRange,
    internal_port: portOrRange,
    created_at: { type: 'string' },
  },
} as const satisfies JSONSchema

export const stateFileSchema = {
  type: 'object',
  required: ['version', 'static_forwards'],
  properties: {
    version: { const: 1 },
    static_forwards: { type: 'array', items: storedForwardSchema },
  },
} as const satisfies JSONSchema

type StateFile = FromSchema<typeof stateFileSchema>
export type StoredForward = FromSchema<typeof storedForwardSchema>

/**
 * Writes data (a string, or its pieces in turn) to path atomically and durably: a temp file in the same directory (mode 0600),
 * fsync, rename over path, fsync the directory. Readers see the old or the new file, never a
 * torn one, even across a power cut. Creates the directory (0700) if missing. Rejects on any
 * I/O error, leaving path untouched and the temp file removed.
 */
export async function writeFileAtomic(path: string, data: string | AsyncIterable<string>): Promise<void> {
  const dir = dirname(path)
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const tmp = join(dir, `.${path.slice(dir.length + 1)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`)
  try {
    const fh = await open(tmp, 'wx', 0o600)
    try {
      if (typeof data === 'string') await fh.writeFile(data, 'utf8')
      else for await (const part of data) await fh.write(part, null, 'utf8')
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, path)
  } catch (e) {
    await unlink(tmp).catch(() => {})
    throw e
  }
  const d = await open(dir, 'r')
  try {
    await d.sync()
  } finally {
    await d.close()
  }
}

/**
 * The API-created static forwards, persisted in a JSON state file
 * (`{"version":1,"static_forwards":[...]}`; other top-level keys are kept for other components).
 * Every mutation is in memory at once and on disk when its promise resolves; writes are serialized.
 */
export class StaticForwardStore {
  private readonly items = new Map<string, StaticForward>()
  private writing: Promise<void> = Promise.resolve()
  private other: Record<string, unknown> = {}

  /** `save` set: persistence is delegated (the daemon's one state file); else this store writes `path` itself. */
  private constructor(
    readonly path: string | null,
    private readonly save: (() => Promise<void>) | null = null,
  ) {}

  /**
   * A store over records that live in a document someone else writes (the daemon's state file):
   * every mutation calls `save`, which must make records() durable. Rejects bad records with
   * WGPMP_STATE_INVALID.
   */
  static fromRecords(records: readonly StoredForward[], save: () => Promise<void>, source = 'state file'): StaticForwardStore {
    const store = new StaticForwardStore(null, save)
    store.load(records, source)
    return store
  }

  private load(list: readonly StoredForward[], source: string): void {
    for (const s of list) {
      const r = makeSpec(s.protocol, s.external_port, s.internal_port)
      if (!r.ok) throw new WgpmpError('WGPMP_STATE_INVALID', `${source}: forward ${s.id}: ${r.error}`)
      const f: StaticForward = { ...r.spec, id: forwardId(r.spec), client: s.client, source: 'api', createdAt: s.created_at }
      this.items.set(f.id, f)
    }
  }

  /** The stored form of every forward, for the state file. */
  records(): StoredForward[] {
    return this.list().map((f) => ({
      id: f.id,
      client: f.client,
      protocol: f.protocol,
      external_port: formatRange(f.external),
      internal_port: formatRange(f.internal),
      created_at: f.createdAt,
    }))
  }

  /** Loads path; a missing file is an empty store. Rejects with WGPMP_STATE_INVALID if it is not valid state. */
  static async open(path: string): Promise<StaticForwardStore> {
    const store = new StaticForwardStore(path)
    let text: string
    try {
      text = await readFile(path, 'utf8')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return store
      throw new WgpmpError('WGPMP_STATE_INVALID', `${path}: cannot read (${(e as Error).message})`, { cause: e })
    }
    let doc: unknown
    try {
      doc = JSON.parse(text)
    } catch (e) {
      throw new WgpmpError('WGPMP_STATE_INVALID', `${path}: not valid JSON (${(e as Error).message})`, { cause: e })
    }
    const validate = new Ajv({ allErrors: true, strict: true }).compile<StateFile>(stateFileSchema)
    if (!validate(doc)) {
      const why = (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? 'invalid'}`).join('; ')
      throw new WgpmpError('WGPMP_STATE_INVALID', `${path}: ${why}`, { cause: validate.errors })
    }
    const { static_forwards: list, ...other } = doc as StateFile & Record<string, unknown>
    store.other = other
    store.load(list, path)
    return store
  }

  list(): StaticForward[] {
    return [...this.items.values()]
  }

  get(id: string): StaticForward | undefined {
    return this.items.get(id)
  }

  /** Adds (or replaces, by id) and persists. On a write error the forward is taken back out and the promise rejects. */
  async put(f: StaticForward): Promise<void> {
    const before = this.items.get(f.id)
    this.items.set(f.id, f)
    try {
      await this.persist()
    } catch (e) {
      if (this.items.get(f.id) === f) {
        if (before) this.items.set(f.id, before)
        else this.items.delete(f.id)
      }
      throw e
    }
  }

  /** Deletes and persists; an unknown id resolves false without writing. On a write error the forward is restored. */
  async delete(id: string): Promise<boolean> {
    const f = this.items.get(id)
    if (!f) return false
    this.items.delete(id)
    try {
      await this.persist()
    } catch (e) {
      if (!this.items.has(id)) this.items.set(id, f)
      throw e
    }
    return true
  }

  /** Writes the current state (serialized after any write in flight). */
  persist(): Promise<void> {
    const { save, path } = this
    const run = async (): Promise<void> => {
      if (save) return save()
      const doc = { ...this.other, version: 1, static_forwards: this.records() }
      await writeFileAtomic(path!, JSON.stringify(doc, null, 2) + '\n')
    }
    const p = this.writing.then(run, run)
    this.writing = p.catch(() => {})
    return p
  }
}

// --- the service ------------------------------------------------------------------------------

export type CreateResult =
  | { readonly ok: true; readonly forward: StaticForward }
  | { readonly ok: false; readonly code: 'client-not-found' }
  | { readonly ok: false; readonly code: 'port-taken'; readonly message: string }

export type DeleteResult = 'deleted' | 'client-not-found' | 'forward-not-found' | 'config-owned'

export interface StaticForwardsDeps {
  store: StaticForwardStore
  sink: StaticSink
  /** Commits changes to the kernel in one batch (the daemon's GroupCommit); rejects if refused. */
  commit: (changes: readonly ForwardChange[]) => Promise<void>
  /**
   * The tunnel addresses of a client id (IPv4 first, then IPv6), or none if no such peer is on the
   * interface now. A static forward is installed on each: from the public IPv4 address, and from
   * the public IPv6 address (NAT66) or as a pinhole for an IPv6 address.
   */
  addressesOf: (clientId: string) => readonly string[]
  log: Logger
  /** Wall clock for createdAt. Default: new Date(). */
  now?: () => Date
}

/**
 * Static forwards from the config file and the API: definitions live here (and in the store),
 * installed ports live in the table (via StaticSink) and the kernel.
 */
export class StaticForwards {
  private readonly config = new Map<string, StaticForward>()
  private readonly now: () => Date

  constructor(private readonly d: StaticForwardsDeps) {
    this.now = d.now ?? (() => new Date())
  }

  /**
   * Sets the config-file forwards (client id -> specs). Returns one problem line per forward that
   * overlaps another config forward; those are skipped. Call before activate().
   */
  setConfigForwards(byClient: ReadonlyMap<string, readonly StaticForwardSpec[]>): string[] {
    this.config.clear()
    const problems: string[] = []
    const createdAt = this.now().toISOString()
    for (const [client, specs] of byClient) {
      for (const spec of specs) {
        const clash = this.all().find((f) => overlaps(f, spec))
        if (clash) {
          problems.push(`static_forwards: ${formatSpec(spec)} for ${client} overlaps ${formatSpec(clash)} for ${clash.client}`)
          continue
        }
        const f: StaticForward = { ...spec, id: forwardId(spec), client, source: 'config', createdAt }
        this.config.set(f.id, f)
      }
    }
    return problems
  }

  /** Config forwards first, then stored ones. */
  all(): StaticForward[] {
    return [...this.config.values(), ...this.d.store.list()]
  }

  forClient(clientId: string): StaticForward[] {
    return this.all().filter((f) => f.client === clientId)
  }

  /**
   * Creates a static forward for a client that is a peer now: reserves its ports, commits them in
   * one batch, then stores it. 'port-taken' when any port is held by another static forward, a
   * NAT-PMP lease or is reserved. Rejects (and changes nothing) if the kernel or the disk refuses.
   */
  async create(clientId: string, spec: StaticForwardSpec): Promise<CreateResult> {
    const addresses = this.d.addressesOf(clientId)
    const address = addresses[0]
    if (address === undefined) return { ok: false, code: 'client-not-found' }
    const clash = this.all().find((f) => overlaps(f, spec))
    if (clash) return { ok: false, code: 'port-taken', message: `${formatSpec(spec)} overlaps the static forward ${formatSpec(clash)}` }
    const first = reserveStatic(this.d.sink, address, spec)
    if (!first.ok) return { ok: false, code: 'port-taken', message: describeConflict(first.conflict) }
    const r = this.alsoOn(clientId, addresses.slice(1), spec, first)
    const forward: StaticForward = { ...spec, id: forwardId(spec), client: clientId, source: 'api', createdAt: this.now().toISOString() }
    try {
      await this.d.commit(r.changes)
    } catch (e) {
      r.undo()
      throw e
    }
    try {
      await this.d.store.put(forward)
    } catch (e) {
      const back = this.releaseAll(addresses, spec)
      await this.d.commit(back.changes).catch((err: unknown) => this.d.log.error({ err, forward: forward.id }, 'static forward: cannot withdraw after a state write failed'))
      throw e
    }
    this.d.log.info({ client: clientId, address, forward: formatSpec(spec), ports: r.changes.length }, 'static forward created')
    return { ok: true, forward }
  }

  /** Deletes an API-created forward: releases its ports (if installed), commits, and forgets it. */
  async delete(clientId: string, forwardId: string): Promise<DeleteResult> {
    const f = this.config.get(forwardId) ?? this.d.store.get(forwardId)
    if (!f || f.client !== clientId) return 'forward-not-found'
    if (f.source === 'config') return 'config-owned'
    const r = this.releaseAll(this.d.addressesOf(clientId), f)
    try {
      await this.d.commit(r.changes)
    } catch (e) {
      r.undo()
      throw e
    }
    await this.d.store.delete(forwardId)
    this.d.log.info({ client: clientId, forward: formatSpec(f) }, 'static forward deleted')
    return 'deleted'
  }

  /**
   * Installs every static forward of a client at its current address (on start, when its peer
   * appears, or after its address changed). Forwards already installed are untouched; one whose
   * ports are taken is skipped and logged. Rejects if the kernel refuses the batch (nothing is then
   * reserved).
   */
  async activate(clientId: string): Promise<{ installed: number; conflicts: Conflict[] }> {
    const addresses = this.d.addressesOf(clientId)
    const changes: ForwardChange[] = []
    const undos: (() => void)[] = []
    const conflicts: Conflict[] = []
    let installed = 0
    for (const address of addresses) {
      for (const f of this.forClient(clientId)) {
        const r = this.reserveOrWarn(clientId, address, f, changes, undos)
        if (r.conflict) conflicts.push(r.conflict)
        else if (r.added > 0) installed++
      }
    }
    try {
      await this.d.commit(changes)
    } catch (e) {
      for (const u of undos.reverse()) u()
      throw e
    }
    return { installed, conflicts }
  }

  /** Adds the client's other addresses (IPv6) to a reservation made on its first: best effort, a conflict there is logged, not fatal. */
  private alsoOn(clientId: string, others: readonly string[], spec: StaticForwardSpec, first: { changes: ForwardChange[]; undo(): void }): { changes: ForwardChange[]; undo(): void } {
    const changes = [...first.changes]
    const undos = [() => first.undo()]
    for (const address of others) this.reserveOrWarn(clientId, address, spec, changes, undos)
    return { changes, undo: () => { for (const u of undos.reverse()) u() } }
  }

  /** Reserves spec at address into changes/undos; a conflict is logged and returned, not thrown. */
  private reserveOrWarn(clientId: string, address: string, spec: StaticForwardSpec, changes: ForwardChange[], undos: (() => void)[]): { added: number; conflict?: Conflict } {
    const r = reserveStatic(this.d.sink, address, spec)
    if (!r.ok) {
      this.d.log.warn({ client: clientId, address, forward: formatSpec(spec), conflict: r.conflict }, 'static forward not installed there: port taken')
      return { added: 0, conflict: r.conflict }
    }
    changes.push(...r.changes)
    undos.push(() => r.undo())
    return { added: r.changes.length }
  }

  private releaseAll(addresses: readonly string[], spec: StaticForwardSpec): { changes: ForwardChange[]; undo(): void } {
    const rs = addresses.map((a) => releaseStatic(this.d.sink, a, spec))
    return { changes: rs.flatMap((r) => r.changes), undo: () => { for (const r of rs.reverse()) r.undo() } }
  }

  /**
   * Withdraws every static forward of a client from `address` (its peer was removed from the
   * interface, or its address changed) in one batch. The definitions stay, so activate() brings
   * them back when the peer returns. Nothing installed: resolves 0 without a batch. Rejects if
   * the kernel refuses (the table is then restored).
   */
  async deactivate(clientId: string, address: string): Promise<number> {
    const changes: ForwardChange[] = []
    const undos: (() => void)[] = []
    for (const f of this.forClient(clientId)) {
      const r = releaseStatic(this.d.sink, address, f)
      changes.push(...r.changes)
      undos.push(() => r.undo())
    }
    try {
      await this.d.commit(changes)
    } catch (e) {
      for (const u of undos.reverse()) u()
      throw e
    }
    return changes.length
  }
}

export const describeConflict = (c: Conflict): string =>
  c.reason === 'reserved' ? `${c.protocol} port ${c.port} is reserved` : `${c.protocol} port ${c.port} is already forwarded`

/**
 * Parses the config file's `static_forwards` (client public key or id -> list of compact specs or
 * body objects) into client id -> specs. `toId` maps a public key to its client id (clientId).
 * Problems are returned as lines for WGPMP_CONFIG_INVALID; nothing throws.
 */
export function parseConfigStaticForwards(
  value: Readonly<Record<string, readonly (string | StaticForwardBody)[]>>,
  toId: (keyOrId: string) => string,
): { forwards: Map<string, StaticForwardSpec[]>; problems: string[] } {
  const forwards = new Map<string, StaticForwardSpec[]>()
  const problems: string[] = []
  for (const [key, list] of Object.entries(value)) {
    const id = toId(key)
    const specs = forwards.get(id) ?? []
    list.forEach((item, i) => {
      const r = typeof item === 'string' ? parseForwardSpec(item) : specFromBody(item)
      if (r.ok) specs.push(r.spec)
      else problems.push(`static_forwards.${key}[${i}]: ${r.error}`)
    })
    forwards.set(id, specs)
  }
  return { forwards, problems }
}
