/**
 * Static forwards: operator-defined, per-client, never expiring. This file is the pure part: spec
 * parsing (`8080:80/tcp`, `27015-27030/udp`, `443/both` and the API body form), overlap checks,
 * and reserving a spec's ports in the lease table (through StaticSink). Their persistence is
 * state/static-store.ts; the service that commits and stores them is forwarder/statics.ts.
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
import type { FromSchema, JSONSchema } from 'json-schema-to-ts'
import type { ForwardChange, Protocol } from '../core/forward.js'

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
export const portOrRange = {
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

export function makeSpec(protocol: StaticProtocol, ext: string | number, int: string | number | undefined): ParseResult {
  const external = parseRange(ext, 'external_port')
  if (typeof external === 'string') return { ok: false, error: external }
  const internal = int === undefined ? external : parseRange(int, 'internal_port')
  if (typeof internal === 'string') return { ok: false, error: internal }
  if (internal.last - internal.first !== external.last - external.first) {
    return {
      ok: false,
      error: `internal_port: range ${formatRange(internal)} has ${rangeLength(internal)} ports, external_port ${formatRange(external)} has ${rangeLength(external)}`,
    }
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
export const forwardId = (s: StaticForwardSpec): string =>
  `${s.protocol}-${s.external.first}${s.external.first === s.external.last ? '' : `-${s.external.last}`}`

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
  { readonly ok: true; readonly changes: readonly ForwardChange[]; undo(): void } | { readonly ok: false; readonly reason: 'taken' | 'reserved' }

export interface Conflict {
  readonly protocol: Protocol
  readonly port: number
  readonly reason: 'taken' | 'reserved'
  /** Set when the holder is another static forward. */
  readonly holder?: string
}

/** Reserves every port of spec for address, all or nothing. Ok: the changes (one batch) and an undo. */
export function reserveStatic(
  sink: StaticSink,
  address: string,
  spec: StaticForwardSpec,
): { ok: true; changes: ForwardChange[]; undo(): void } | { ok: false; conflict: Conflict } {
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
  return {
    changes,
    undo: () => {
      for (const u of undos.reverse()) u()
    },
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
