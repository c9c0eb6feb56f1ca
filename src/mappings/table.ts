/**
 * MappingTable: NAT-PMP/PCP lease state and static forwards, keyed by (client, protocol, internal
 * port), with no timers and no I/O. Every operation returns the ForwardChanges it implies and an
 * undo, so the daemon can commit them to the kernel first and roll the table back if refused.
 *
 * External ports live in address spaces: the public IPv4 address, the public IPv6 address (for
 * clients with unique-local addresses, NAT66), and pinholes (a client with a global IPv6 address
 * opens its own address's port: no DNAT, no shared port, external = internal).
 */
import { ResultCode } from '../protocol/constants.js'
import type { Forward, ForwardChange, Protocol } from '../drivers/driver.js'
import { canonicalAddress } from '../ip.js'
import type { Clock } from './clock.js'
import { DeadlineHeap } from './heap.js'

/** nat-pmp, pcp and upnp leases are dynamic (they expire); static forwards never expire. */
export type Origin = 'nat-pmp' | 'pcp' | 'upnp' | 'static'

export interface Lease {
  readonly id: number
  readonly client: string
  readonly protocol: Protocol
  /** The internal port the client asked for; 0 for a symmetric mapping. */
  readonly internalPort: number
  readonly externalPort: number
  /** Where the forward points: internalPort, or externalPort for a symmetric mapping. */
  readonly targetPort: number
  /** A client with a global IPv6 address: its own port is opened, nothing is translated. */
  readonly pinhole: boolean
  origin: Origin
  /** PCP mapping nonce (hex), once a PCP client has used this mapping (RFC 6887 §11.3). */
  nonce?: string
  /** UPnP NewPortMappingDescription (client text, already cleaned and capped: src/upnp/backend.ts). */
  description?: string
  /** Granted lifetime in seconds (after clamping); 0 for a static forward. */
  lifetimeSeconds: number
  /** Clock ms. */
  readonly createdAt: number
  /** Clock ms; Infinity for a static forward. */
  expiresAt: number
}

export interface TableOptions {
  clock: Clock
  minPort: number
  maxPort: number
  minLifetimeSeconds: number
  maxLifetimeSeconds: number
  /** At most this many leases per client (result 4 beyond). */
  maxPerClient?: number
  /** Ports never granted, whatever the range says (e.g. the WireGuard listen port). */
  isReserved?: (port: number) => boolean
  /** Uniform in [0, 1). Injected so tests are deterministic. */
  random?: () => number
  /** For static forwards: does this IPv6 client get a pinhole (its address is global) rather than NAT66? */
  isPinholeClient?: (address: string) => boolean
}

export interface MapRequest {
  readonly client: string
  readonly protocol: Protocol
  readonly internalPort: number
  readonly suggestedExternalPort: number
  /** Must be > 0 (0 is a delete: use remove()). */
  readonly lifetimeSeconds: number
  /** 'pcp' for PCP MAP (default 'nat-pmp'). A PCP and a NAT-PMP request for the same key are one mapping. */
  readonly origin?: 'nat-pmp' | 'pcp' | 'upnp'
  /** UPnP: the mapping's description; a UPnP renewal also makes the lease a upnp one. */
  readonly description?: string
  /** UPnP: the longest lifetime for this request, instead of maxLifetimeSeconds (UPnP cannot tell a client it got less). */
  readonly maxLifetimeSeconds?: number
  /** PCP nonce (hex): a renewal with another nonce is refused (RFC 6887 §11.3). */
  readonly nonce?: string
  /** PCP PREFER_FAILURE: only the suggested port will do (RFC 6887 §13.2). */
  readonly exactPort?: boolean
  /** IPv6 client with a global address: open its own port (external = internal), no DNAT. */
  readonly pinhole?: boolean
}

/**
 * Why a request was refused: no-ports (range exhausted), client-limit (per-client cap),
 * port-unavailable (exactPort and the suggestion is not free), bad-client (address does not
 * parse), nonce-mismatch (PCP), not-dynamic (the key is a static forward).
 */
export type RefusalReason = 'no-ports' | 'client-limit' | 'port-unavailable' | 'bad-client' | 'nonce-mismatch'

export type Outcome =
  | { readonly ok: true; readonly lease: Lease; readonly changes: readonly ForwardChange[]; undo(): void }
  | { readonly ok: false; readonly reason: RefusalReason }

/** NAT-PMP's answer for a refusal (RFC 6886 §3.5). */
export const natpmpResultFor = (reason: RefusalReason): ResultCode =>
  reason === 'bad-client' || reason === 'nonce-mismatch' ? ResultCode.NotAuthorized : ResultCode.OutOfResources

export interface Removal {
  readonly removed: readonly Lease[]
  readonly changes: readonly ForwardChange[]
  undo(): void
}

const PROTO_BIT: Record<Protocol, number> = { udp: 1, tcp: 2 }
const PORTS = 65536
/** Random probes before a full scan; at 90% occupancy 32 probes miss with p ≈ 3%. */
const RANDOM_PROBES = 32

export const toForward = (l: Lease): Forward => ({
  protocol: l.protocol,
  externalPort: l.externalPort,
  internalAddress: l.client,
  internalPort: l.targetPort,
  ...(l.pinhole ? { pinhole: true } : {}),
})

/** Address spaces of external ports: the public IPv4 address, the public IPv6 address. Pinholes own no shared port. */
const V4 = 0
const V6 = 1
type Space = typeof V4 | typeof V6

export class MappingTable {
  private readonly clock: Clock
  private readonly o: Required<Omit<TableOptions, 'clock' | 'maxPerClient'>> & { maxPerClient: number }
  /** (client, protocol, internal port) -> lease. */
  private readonly byKey = new Map<number, Lease>()
  /** Static forwards: (space, protocol, external port) -> lease; pinholes by "address/protocol/port". */
  private readonly statics = new Map<number, Lease>()
  private readonly staticPins = new Map<string, Lease>()
  /** client -> its lease keys. */
  private readonly byClient = new Map<number, Set<number>>()
  /** Client address (canonical text) -> small number, for packed keys; never reused. */
  private readonly clientIds = new Map<string, number>()
  /** Client number -> its canonical text, shared by all its leases (one string per client, not per lease). */
  private readonly clientNames: string[] = ['']
  /** Per space: external port -> owning client (0 = free). A port belongs to one client for both protocols (RFC 6886 §3.3). */
  private readonly owner = [new Uint32Array(PORTS), new Uint32Array(PORTS)] as const
  /** Per space: external port -> protocols in use (PROTO_BIT). */
  private readonly used = [new Uint8Array(PORTS), new Uint8Array(PORTS)] as const
  /** (deadline, lease key): lazy deletion, an entry counts only if the lease under its key is due. */
  private readonly heap = new DeadlineHeap()
  private nextId = 1

  constructor(opts: TableOptions) {
    this.clock = opts.clock
    this.o = {
      minPort: opts.minPort,
      maxPort: opts.maxPort,
      minLifetimeSeconds: opts.minLifetimeSeconds,
      maxLifetimeSeconds: opts.maxLifetimeSeconds,
      maxPerClient: opts.maxPerClient ?? Infinity,
      isReserved: opts.isReserved ?? (() => false),
      random: opts.random ?? Math.random,
      isPinholeClient: opts.isPinholeClient ?? (() => false),
    }
  }

  /** Dynamic leases (NAT-PMP and PCP). */
  get size(): number {
    return this.byKey.size
  }

  /** Static forwards (one per protocol, external port and family). */
  get staticCount(): number {
    return this.statics.size + this.staticPins.size
  }

  /** Clamps a requested lifetime (> 0) into the configured range. */
  clampLifetime(seconds: number): number {
    return Math.min(this.o.maxLifetimeSeconds, Math.max(this.o.minLifetimeSeconds, seconds))
  }

  /** The client number of an address (canonical text), interning it; null for something that is not an address. */
  private client(address: string, intern = true): { c: number; address: string; space: Space } | null {
    const canon = canonicalAddress(address)
    if (canon === null || canon === '0.0.0.0' || canon === '::') return null
    let c = this.clientIds.get(canon)
    if (c === undefined) {
      if (!intern) return null
      c = this.clientIds.size + 1
      this.clientIds.set(canon, c)
      this.clientNames[c] = canon
    }
    const name = this.clientNames[c]!
    return { c, address: name, space: name.includes(':') ? V6 : V4 }
  }

  get(client: string, protocol: Protocol, internalPort: number): Lease | undefined {
    const k = this.client(client, false)
    return k === null ? undefined : this.byKey.get(key(k.c, protocol, internalPort))
  }

  /** Dynamic leases, then static forwards. */
  leases(): Lease[] {
    return [...this.byKey.values(), ...this.statics.values(), ...this.staticPins.values()]
  }

  /** A client's dynamic leases and static forwards. */
  leasesOf(client: string): Lease[] {
    const k = this.client(client, false)
    if (k === null) return []
    const keys = this.byClient.get(k.c)
    const dynamic = keys ? [...keys].map((x) => this.byKey.get(x)).filter((l): l is Lease => l !== undefined) : []
    return [...dynamic, ...[...this.statics.values(), ...this.staticPins.values()].filter((l) => l.client === k.address)]
  }

  /** The forward on (protocol, external port) of the public IPv4 address, dynamic or static. */
  byExternal(protocol: Protocol, externalPort: number): Lease | undefined {
    const s = this.statics.get(staticKey(V4, protocol, externalPort))
    if (s) return s
    const c = this.owner[V4][externalPort]
    if (!c) return undefined
    for (const k of this.byClient.get(c) ?? []) {
      const l = this.byKey.get(k)
      if (l && l.protocol === protocol && l.externalPort === externalPort && !l.pinhole && !l.client.includes(':')) return l
    }
    return undefined
  }

  /**
   * Creates or renews the client's mapping. Renewal keeps the external port and only extends the
   * lease (no kernel change). A new mapping takes, in order: the client's port for the other
   * protocol with the same internal port, the suggested port, the internal port, then a random
   * free port. A pinhole takes the internal port itself. Refusals: no-ports, client-limit,
   * port-unavailable (exactPort), bad-client (not an address), nonce-mismatch (PCP).
   */
  map(req: MapRequest): Outcome {
    const cl = this.client(req.client)
    if (cl === null) return { ok: false, reason: 'bad-client' }
    const { c } = cl
    const k = key(c, req.protocol, req.internalPort)
    const lifetime = req.maxLifetimeSeconds === undefined ? this.clampLifetime(req.lifetimeSeconds) : Math.min(req.maxLifetimeSeconds, Math.max(this.o.minLifetimeSeconds, req.lifetimeSeconds))
    const now = this.clock.now()
    const existing = this.byKey.get(k)
    if (existing) {
      if (req.nonce !== undefined && existing.nonce !== undefined && req.nonce !== existing.nonce) return { ok: false, reason: 'nonce-mismatch' }
      const before = { lifetimeSeconds: existing.lifetimeSeconds, expiresAt: existing.expiresAt, nonce: existing.nonce, origin: existing.origin, description: existing.description }
      existing.lifetimeSeconds = lifetime
      existing.expiresAt = now + lifetime * 1000
      if (req.nonce !== undefined) {
        existing.nonce = req.nonce
        existing.origin = 'pcp'
      }
      if (req.origin === 'upnp') {
        existing.origin = 'upnp'
        existing.description = req.description ?? ''
      }
      // The heap keeps one entry per lease: a later deadline is picked up lazily when the old one
      // comes due; only an earlier one needs an entry of its own.
      if (existing.expiresAt < before.expiresAt) this.heap.push(existing.expiresAt, k)
      return {
        ok: true,
        lease: existing,
        changes: [],
        undo: () => {
          if (this.byKey.get(k) !== existing) return
          existing.lifetimeSeconds = before.lifetimeSeconds
          existing.expiresAt = before.expiresAt
          existing.origin = before.origin
          if (before.nonce === undefined) delete existing.nonce
          else existing.nonce = before.nonce
          if (before.description === undefined) delete existing.description
          else existing.description = before.description
        },
      }
    }
    if ((this.byClient.get(c)?.size ?? 0) >= this.o.maxPerClient) return { ok: false, reason: 'client-limit' }
    const pinhole = req.pinhole === true && cl.space === V6
    let port: number | null
    if (pinhole) {
      port = req.internalPort > 0 && !this.staticPins.has(pinKey(cl.address, req.protocol, req.internalPort)) ? req.internalPort : null
      if (port === null) return { ok: false, reason: 'port-unavailable' }
    } else {
      port = req.exactPort
        ? this.portFree(c, cl.space, req.protocol, req.suggestedExternalPort) ? req.suggestedExternalPort : null
        : this.pickPort(c, cl.space, req)
      if (port === null) return { ok: false, reason: req.exactPort ? 'port-unavailable' : 'no-ports' }
    }
    const lease: Lease = {
      id: this.nextId++,
      client: cl.address,
      protocol: req.protocol,
      internalPort: req.internalPort,
      externalPort: port,
      targetPort: req.internalPort === 0 ? port : req.internalPort,
      pinhole,
      origin: req.origin ?? 'nat-pmp',
      ...(req.nonce === undefined ? {} : { nonce: req.nonce }),
      ...(req.origin === 'upnp' ? { description: req.description ?? '' } : {}),
      lifetimeSeconds: lifetime,
      createdAt: now,
      expiresAt: now + lifetime * 1000,
    }
    this.insert(c, k, lease)
    return {
      ok: true,
      lease,
      changes: [{ op: 'add', forward: toForward(lease) }],
      undo: () => {
        if (this.byKey.get(k) === lease) this.drop(c, k, lease)
      },
    }
  }

  /**
   * Removes the client's mapping for (protocol, internal port); internal port 0 removes all of that
   * protocol, at most `limit` of them (call again for the rest: see removeInChunks).
   */
  remove(client: string, protocol: Protocol, internalPort: number, limit = Infinity): Removal {
    const cl = this.client(client, false)
    if (cl === null) return { removed: [], changes: [], undo: () => {} }
    const keys =
      internalPort === 0
        ? [...(this.byClient.get(cl.c) ?? [])].filter((k) => this.byKey.get(k)?.protocol === protocol).slice(0, limit)
        : [key(cl.c, protocol, internalPort)]
    return this.removeKeys(keys)
  }

  /**
   * Re-inserts a lease read back from the state file, with its own deadline, origin and nonce.
   * Skipped (ok false) when its key exists, or its port is reserved, out of the client's reach
   * or taken: what was granted before a restart never overrides what holds now.
   */
  restore(l: {
    client: string; protocol: Protocol; internalPort: number; externalPort: number; targetPort: number
    lifetimeSeconds: number; createdAt: number; expiresAt: number; origin: 'nat-pmp' | 'pcp' | 'upnp'; nonce?: string; description?: string; pinhole?: boolean
  }): { ok: true; changes: readonly ForwardChange[] } | { ok: false } {
    const cl = this.client(l.client)
    if (cl === null) return { ok: false }
    const k = key(cl.c, l.protocol, l.internalPort)
    const pinhole = l.pinhole === true && cl.space === V6
    if (this.byKey.has(k)) return { ok: false }
    if (pinhole ? this.staticPins.has(pinKey(cl.address, l.protocol, l.externalPort)) : this.o.isReserved(l.externalPort) || !this.portFree(cl.c, cl.space, l.protocol, l.externalPort, true)) return { ok: false }
    const lease: Lease = {
      id: this.nextId++, client: cl.address, protocol: l.protocol, internalPort: l.internalPort, externalPort: l.externalPort,
      targetPort: l.targetPort, pinhole, origin: l.origin, ...(l.nonce === undefined ? {} : { nonce: l.nonce }),
      ...(l.description === undefined ? {} : { description: l.description }),
      lifetimeSeconds: l.lifetimeSeconds, createdAt: l.createdAt, expiresAt: l.expiresAt,
    }
    this.insert(cl.c, k, lease)
    return { ok: true, changes: [{ op: 'add', forward: toForward(lease) }] }
  }

  /** A client's dynamic leases (its peer was removed or disconnected), at most `limit`; static forwards stay. */
  removeClient(client: string, limit = Infinity): Removal {
    const cl = this.client(client, false)
    return this.removeKeys(cl === null ? [] : [...(this.byClient.get(cl.c) ?? [])].slice(0, limit))
  }

  /** Dynamic leases, at most `limit` (an operator's flush). */
  removeAllDynamic(limit = Infinity): Removal {
    const keys: number[] = []
    for (const k of this.byKey.keys()) {
      if (keys.length >= limit) break
      keys.push(k)
    }
    return this.removeKeys(keys)
  }

  /**
   * Reserves (protocol, externalPort) for a static forward to address:internalPort, no expiry.
   * Idempotent for the same forward. Refused when a lease or another static forward holds the
   * port ('taken') or it is reserved. The lease range does not apply to static forwards. For an
   * IPv6 address: a unique-local one is forwarded from the public IPv6 address, a global one gets
   * a pinhole, which cannot translate ports ('taken' unless externalPort === internalPort).
   */
  addStatic(address: string, protocol: Protocol, externalPort: number, internalPort: number):
    | { readonly ok: true; readonly changes: readonly ForwardChange[]; undo(): void }
    | { readonly ok: false; readonly reason: 'taken' | 'reserved' } {
    const cl = this.client(address)
    if (cl === null || !Number.isInteger(externalPort) || externalPort <= 0 || externalPort >= PORTS) return { ok: false, reason: 'taken' }
    const pinhole = cl.space === V6 && this.o.isPinholeClient(cl.address)
    const now = this.clock.now()
    const make = (): Lease => ({
      id: this.nextId++, client: cl.address, protocol, internalPort, externalPort, targetPort: internalPort, pinhole,
      origin: 'static', lifetimeSeconds: 0, createdAt: now, expiresAt: Infinity,
    })
    if (pinhole) {
      const pk = pinKey(cl.address, protocol, externalPort)
      const held = this.staticPins.get(pk)
      if (held && held.targetPort === internalPort) return { ok: true, changes: [], undo: () => {} }
      if (held || externalPort !== internalPort) return { ok: false, reason: 'taken' }
      const dyn = this.byKey.get(key(cl.c, protocol, internalPort))
      if (dyn?.pinhole) return { ok: false, reason: 'taken' }
      const lease = make()
      this.staticPins.set(pk, lease)
      return {
        ok: true,
        changes: [{ op: 'add', forward: toForward(lease) }],
        undo: () => {
          if (this.staticPins.get(pk) === lease) this.staticPins.delete(pk)
        },
      }
    }
    const sk = staticKey(cl.space, protocol, externalPort)
    const held = this.statics.get(sk)
    if (held && held.client === cl.address && held.targetPort === internalPort) return { ok: true, changes: [], undo: () => {} }
    if (this.o.isReserved(externalPort)) return { ok: false, reason: 'reserved' }
    const owner = this.owner[cl.space]
    const used = this.used[cl.space]
    if (held || (used[externalPort]! & PROTO_BIT[protocol]) !== 0 || (owner[externalPort] !== 0 && owner[externalPort] !== cl.c)) {
      return { ok: false, reason: 'taken' }
    }
    const lease = make()
    this.statics.set(sk, lease)
    owner[externalPort] = cl.c
    used[externalPort]! |= PROTO_BIT[protocol]
    return {
      ok: true,
      changes: [{ op: 'add', forward: toForward(lease) }],
      undo: () => {
        if (this.statics.get(sk) === lease) this.dropStatic(sk, cl.space, lease)
      },
    }
  }

  /** Releases a static forward held by address; anything else is a no-op. */
  removeStatic(address: string, protocol: Protocol, externalPort: number): { readonly changes: readonly ForwardChange[]; undo(): void } {
    const cl = this.client(address, false)
    const none = { changes: [], undo: () => {} }
    if (cl === null) return none
    const pk = pinKey(cl.address, protocol, externalPort)
    const pin = this.staticPins.get(pk)
    if (pin) {
      this.staticPins.delete(pk)
      return {
        changes: [{ op: 'delete', forward: toForward(pin) }],
        undo: () => {
          if (!this.staticPins.has(pk)) this.staticPins.set(pk, pin)
        },
      }
    }
    const sk = staticKey(cl.space, protocol, externalPort)
    const lease = this.statics.get(sk)
    if (!lease || lease.client !== cl.address) return none
    this.dropStatic(sk, cl.space, lease)
    return {
      changes: [{ op: 'delete', forward: toForward(lease) }],
      undo: () => {
        if (this.statics.has(sk) || !this.portFree(cl.c, cl.space, protocol, externalPort, true)) return
        this.statics.set(sk, lease)
        this.owner[cl.space][externalPort] = cl.c
        this.used[cl.space][externalPort]! |= PROTO_BIT[protocol]
      },
    }
  }

  /**
   * Removes and returns the leases whose deadline has passed, at most `limit` of them (the rest
   * stay due for the next call), as one set of changes.
   */
  takeExpired(limit = Infinity): Removal {
    const now = this.clock.now()
    const keys = new Set<number>()
    for (let top = this.heap.peek(); top && top.deadline <= now && keys.size < limit; top = this.heap.peek()) {
      this.heap.pop()
      const lease = this.byKey.get(top.id)
      if (!lease) continue // removed: a stale entry
      if (lease.expiresAt <= now) keys.add(top.id)
      else this.heap.push(lease.expiresAt, top.id) // renewed since: back in at its new deadline
    }
    return this.removeKeys([...keys], /* requeue on undo */ true)
  }

  /** The next deadline (clock ms), or null with no leases. */
  nextDeadline(): number | null {
    for (let top = this.heap.peek(); top; top = this.heap.peek()) {
      const lease = this.byKey.get(top.id)
      if (lease && lease.expiresAt === top.deadline) return top.deadline
      this.heap.pop()
      if (lease && lease.expiresAt > top.deadline) this.heap.push(lease.expiresAt, top.id) // renewed: requeue lazily
    }
    return null
  }

  /** Whole seconds left on a lease (never negative). */
  secondsLeft(l: Lease): number {
    return Math.max(0, Math.ceil((l.expiresAt - this.clock.now()) / 1000))
  }

  private dropStatic(sk: number, space: Space, lease: Lease): void {
    this.statics.delete(sk)
    const p = lease.externalPort
    this.used[space][p]! &= ~PROTO_BIT[lease.protocol]
    if (this.used[space][p] === 0) this.owner[space][p] = 0
  }

  private removeKeys(keys: readonly number[], requeue = false): Removal {
    const removed: Lease[] = []
    for (const k of keys) {
      const l = this.byKey.get(k)
      if (!l) continue
      this.drop(clientOf(k), k, l)
      removed.push(l)
    }
    return {
      removed,
      changes: removed.map((l) => ({ op: 'delete', forward: toForward(l) })),
      undo: () => {
        for (const l of removed) {
          const cl = this.client(l.client)!
          const k = key(cl.c, l.protocol, l.internalPort)
          if (this.byKey.has(k) || (!l.pinhole && !this.portFree(cl.c, cl.space, l.protocol, l.externalPort, true))) continue
          this.insert(cl.c, k, l)
          if (requeue) this.heap.push(l.expiresAt, k)
        }
      },
    }
  }

  private insert(c: number, k: number, lease: Lease): void {
    this.byKey.set(k, lease)
    let set = this.byClient.get(c)
    if (!set) this.byClient.set(c, (set = new Set()))
    set.add(k)
    if (!lease.pinhole) {
      const space = spaceOf(lease.client)
      this.owner[space][lease.externalPort] = c
      this.used[space][lease.externalPort]! |= PROTO_BIT[lease.protocol]
    }
    this.heap.push(lease.expiresAt, k)
  }

  private drop(c: number, k: number, lease: Lease): void {
    this.byKey.delete(k)
    const set = this.byClient.get(c)
    set?.delete(k)
    if (set && set.size === 0) this.byClient.delete(c)
    if (lease.pinhole) return
    const space = spaceOf(lease.client)
    const p = lease.externalPort
    this.used[space][p]! &= ~PROTO_BIT[lease.protocol]
    if (this.used[space][p] === 0) this.owner[space][p] = 0
  }

  /** Free for client c and protocol in space: in range, not reserved, owned by nobody or by c with this protocol unused. */
  private portFree(c: number, space: Space, protocol: Protocol, p: number, ignoreRange = false): boolean {
    if (!Number.isInteger(p) || p <= 0 || p >= PORTS) return false
    if (!ignoreRange && (p < this.o.minPort || p > this.o.maxPort || this.o.isReserved(p))) return false
    const owner = this.owner[space][p]!
    return owner === 0 || (owner === c && (this.used[space][p]! & PROTO_BIT[protocol]) === 0)
  }

  private pickPort(c: number, space: Space, req: MapRequest): number | null {
    const other: Protocol = req.protocol === 'tcp' ? 'udp' : 'tcp'
    const companion = this.byKey.get(key(c, other, req.internalPort))
    const candidates = [companion?.externalPort ?? 0, req.suggestedExternalPort, req.internalPort]
    for (const p of candidates) if (p !== 0 && this.portFree(c, space, req.protocol, p)) return p
    const { minPort, maxPort } = this.o
    const span = maxPort - minPort + 1
    if (span <= 0) return null
    for (let i = 0; i < RANDOM_PROBES; i++) {
      const p = minPort + Math.floor(this.o.random() * span)
      if (this.portFree(c, space, req.protocol, p)) return p
    }
    // Dense table: one bounded scan from a random start (at most 65,535 cheap checks).
    const start = Math.floor(this.o.random() * span)
    for (let i = 0; i < span; i++) {
      const p = minPort + ((start + i) % span)
      if (this.portFree(c, space, req.protocol, p)) return p
    }
    return null
  }
}

/** (client, protocol, internal port) packed in one safe integer: client number, 1 + 16 bits. */
const key = (c: number, protocol: Protocol, internalPort: number): number =>
  c * 131072 + (protocol === 'tcp' ? 65536 : 0) + internalPort
const clientOf = (k: number): number => Math.floor(k / 131072)
const staticKey = (space: Space, protocol: Protocol, externalPort: number): number => space * 131072 + (protocol === 'tcp' ? 65536 : 0) + externalPort
const pinKey = (address: string, protocol: Protocol, port: number): string => `${address}/${protocol}/${port}`
const spaceOf = (address: string): Space => (address.includes(':') ? V6 : V4)
