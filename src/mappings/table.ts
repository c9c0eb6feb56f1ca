/**
 * MappingTable: the lease state of every front-end (NAT-PMP, PCP, UPnP) and static forwards, keyed by (client, protocol, internal
 * port), with no timers and no I/O. Every operation returns the ForwardChanges it implies and an
 * undo, so the daemon can commit them to the kernel first and roll the table back if refused.
 *
 * External ports live in address spaces: the public IPv4 address, the public IPv6 address (for
 * clients with unique-local addresses, NAT66), and pinholes (a client with a global IPv6 address
 * opens its own address's port: no DNAT, no shared port, external = internal).
 */
import type { TableRefusal } from '../core/refusal.js'
import { toForward, type ForwardChange, type DynamicOrigin, type Lease, type Protocol } from '../core/forward.js'
import { canonicalAddress } from '../core/ip.js'
import type { Clock } from '../core/clock.js'
import { DeadlineHeap } from './heap.js'

export interface TableOptions {
  clock: Clock
  minPort: number
  maxPort: number
  minLifetimeSeconds: number
  maxLifetimeSeconds: number
  /** The longest UPnP lease (upnp_permanent_lease_seconds); default maxLifetimeSeconds. A restored UPnP lease is clamped to it. */
  upnpMaxLifetimeSeconds?: number
  /** At most this many leases per client (result 4 beyond). */
  maxPerClient?: number
  /** Ports never granted, whatever the range says (e.g. the WireGuard listen port). */
  isReserved?: (port: number) => boolean
  /** Uniform in [0, 1). Injected so tests are deterministic. */
  random?: () => number
  /** For static forwards: does this IPv6 client get a pinhole (its address is global) rather than NAT66? */
  isPinholeClient?: (address: string) => boolean
  /**
   * Told synchronously of every change to a dynamic lease (issue 10 §2: the journal stages it, so
   * the reply can wait until it is on disk): 'put' when created, renewed, restored or put back by
   * an undo, 'del' when it leaves the table.
   */
  onChange?: (op: 'put' | 'del', lease: Lease, hold?: PortHold) => void
  /**
   * Issue 10 §3: when a lease lapses or is deleted, its external port stays held for its client
   * this long (seconds; 0 = off): the client gets it back on its next request for the same
   * internal port, whatever it suggests, and another client gets it only when no other port in
   * range is free (or a static forward takes it).
   */
  portHoldSeconds?: number
}

/** A port kept for a client after its lease ended (issue 10 §3). `until` is clock ms. */
export interface PortHold {
  readonly client: string
  readonly internalPort: number
  readonly externalPort: number
  readonly until: number
}

interface Hold extends PortHold {
  readonly c: number
  readonly space: Space
}

/** Why a saved lease was not restored (issue 10 §4). */
export type RestoreRefusal = 'bad-client' | 'duplicate' | 'reserved' | 'taken' | 'out-of-range'

export interface MapRequest {
  readonly client: string
  readonly protocol: Protocol
  /** 0: a symmetric mapping (the forward goes to the external port). */
  readonly internalPort: number
  /** 0: any; otherwise a hint (or the only port, with exactPort). */
  readonly suggestedExternalPort: number
  /** Must be > 0 (0 is a delete: use remove()); clamped here. */
  readonly lifetimeSeconds: number
  /** 'pcp' for PCP MAP (default 'nat-pmp'). A PCP and a NAT-PMP request for the same key are one mapping. */
  readonly origin?: DynamicOrigin
  /** UPnP: the mapping's description; a UPnP renewal also makes the lease a upnp one. */
  readonly description?: string
  /** UPnP: the longest lifetime for this request, instead of maxLifetimeSeconds (UPnP cannot tell a client it got less). */
  readonly maxLifetimeSeconds?: number
  /** PCP nonce (hex): a renewal with another nonce is refused (RFC 6887 §11.3). */
  readonly nonce?: string
  /** Only the suggested port will do (PCP PREFER_FAILURE, RFC 6887 §13.2; UPnP AddPortMapping). */
  readonly exactPort?: boolean
  /** IPv6 client with a global address: open its own port (external = internal), no DNAT. */
  readonly pinhole?: boolean
}

export type Outcome =
  { readonly ok: true; readonly lease: Lease; readonly changes: readonly ForwardChange[]; undo(): void } | { readonly ok: false; readonly reason: TableRefusal }

export interface Removal {
  readonly removed: readonly Lease[]
  readonly changes: readonly ForwardChange[]
  undo(): void
}

const PROTO_BIT: Record<Protocol, number> = { udp: 1, tcp: 2 }
const PORTS = 65536
/** Random probes before a full scan; at 90% occupancy 32 probes miss with p ≈ 3%. */
const RANDOM_PROBES = 32
/** How long a failed scan for a free, unheld port is trusted without a release (see unheldMiss). */
const MISS_TTL_MS = 1_000

/** Address spaces of external ports: the public IPv4 address, the public IPv6 address. Pinholes own no shared port. */
const V4 = 0
const V6 = 1
type Space = typeof V4 | typeof V6

export class MappingTable {
  private readonly clock: Clock
  private readonly o: Required<Omit<TableOptions, 'clock' | 'maxPerClient' | 'onChange' | 'portHoldSeconds'>> & { maxPerClient: number; holdMs: number }
  /** Held ports (issue 10 §3): by (client, internal port), and per space by external port. */
  private readonly holdsByKey = new Map<number, Hold>()
  private readonly holdsByPort = [new Map<number, Hold>(), new Map<number, Hold>()] as const
  /** Per space: ports freed or unheld so far (any change that can make a scan for a free port succeed). */
  private readonly releases = [0, 0]
  /**
   * Per space: a full scan found no port that is free and not held for another client (the range is
   * full of leases and holds). Until a port is freed or unheld, or MISS_TTL_MS passes (a hold lapses
   * by time, a reserved port stops being listened on), allocations skip that scan and go straight
   * to another client's held port: one scan per change, not two full scans per request (the bench
   * saw 114-476 new forwards/s with the range held by its own churn).
   */
  private readonly unheldMiss: ({ at: number; releases: number } | null)[] = [null, null]
  private readonly onChange: NonNullable<TableOptions['onChange']>
  /** (client, protocol, internal port) -> lease. */
  private readonly byKey = new Map<number, Lease>()
  /** Static forwards: (space, protocol, external port) -> lease; pinholes by "address/protocol/port". */
  private readonly statics = new Map<number, Lease>()
  private readonly staticPins = new Map<string, Lease>()
  /** Static forwards by (client, protocol, target port): a request for that internal port meets them (issue 10 §1). */
  private readonly staticByTarget = new Map<string, Lease[]>()
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
    this.onChange = opts.onChange ?? (() => {})
    this.o = {
      minPort: opts.minPort,
      maxPort: opts.maxPort,
      minLifetimeSeconds: opts.minLifetimeSeconds,
      maxLifetimeSeconds: opts.maxLifetimeSeconds,
      upnpMaxLifetimeSeconds: opts.upnpMaxLifetimeSeconds ?? opts.maxLifetimeSeconds,
      maxPerClient: opts.maxPerClient ?? Infinity,
      isReserved: opts.isReserved ?? (() => false),
      random: opts.random ?? Math.random,
      isPinholeClient: opts.isPinholeClient ?? (() => false),
      holdMs: Math.max(0, (opts.portHoldSeconds ?? 0) * 1000),
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
    const lifetime =
      req.maxLifetimeSeconds === undefined
        ? this.clampLifetime(req.lifetimeSeconds)
        : Math.min(req.maxLifetimeSeconds, Math.max(this.o.minLifetimeSeconds, req.lifetimeSeconds))
    const now = this.clock.now()
    const existing = this.byKey.get(k)
    if (existing) return this.renew(existing, k, req, lifetime, now)
    if (req.internalPort !== 0 && req.pinhole !== true) {
      // Issue 10 §1: a request whose internal port is the target of this client's symmetric lease
      // (internal 0 -> X) for the same protocol IS that lease. gluetun maps internal 0 and then
      // renews every 45 s with internal X, suggested X, and restarts if it gets anything but X.
      const sk = key(c, req.protocol, 0)
      const sym = this.byKey.get(sk)
      if (sym && sym.externalPort === req.internalPort) return this.renew(sym, sk, req, lifetime, now)
    }
    if (req.internalPort !== 0) {
      // Issue 10 §1: the client already holds a static forward to its own port P: asking for P
      // gets the static forward's external port (the lifetime asked, clamped), not a second port.
      // Nothing is stored: a later delete finds no lease and leaves the static forward alone.
      const st = this.staticByTarget.get(targetKey(c, req.protocol, req.internalPort))?.[0]
      if (st && (!req.exactPort || req.suggestedExternalPort === st.externalPort)) {
        const lease: Lease = { ...st, lifetimeSeconds: lifetime, expiresAt: now + lifetime * 1000 }
        return { ok: true, lease, changes: [], undo: () => {} }
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
        ? this.portFree(c, cl.space, req.protocol, req.suggestedExternalPort)
          ? req.suggestedExternalPort
          : null
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
        if (this.byKey.get(k) === lease) this.drop(c, k, lease, false) // never acknowledged: no port to hold
      },
    }
  }

  /** Renews `existing` (stored under k): same external port, new lifetime, no kernel change. */
  private renew(existing: Lease, k: number, req: MapRequest, lifetime: number, now: number): Outcome {
    if (req.nonce !== undefined && existing.nonce !== undefined && req.nonce !== existing.nonce) return { ok: false, reason: 'nonce-mismatch' }
    const before = {
      lifetimeSeconds: existing.lifetimeSeconds,
      expiresAt: existing.expiresAt,
      nonce: existing.nonce,
      origin: existing.origin,
      description: existing.description,
    }
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
    this.onChange('put', existing)
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
        this.onChange('put', existing)
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
        : [this.symmetricKeyFor(cl.c, protocol, internalPort)]
    return this.removeKeys(keys)
  }

  /**
   * Re-inserts a lease read back from the state file, with its own deadline, origin and nonce.
   * Skipped (ok false) when its key exists, or its port is reserved, out of the client's reach
   * or taken: what was granted before a restart never overrides what holds now.
   */
  restore(l: {
    client: string
    protocol: Protocol
    internalPort: number
    externalPort: number
    targetPort: number
    lifetimeSeconds: number
    createdAt: number
    expiresAt: number
    origin: DynamicOrigin
    nonce?: string
    description?: string
    pinhole?: boolean
  }): { ok: true; changes: readonly ForwardChange[]; lease: Lease } | { ok: false; reason: RestoreRefusal } {
    const cl = this.client(l.client)
    if (cl === null) return { ok: false, reason: 'bad-client' }
    const k = key(cl.c, l.protocol, l.internalPort)
    const pinhole = l.pinhole === true && cl.space === V6
    if (this.byKey.has(k)) return { ok: false, reason: 'duplicate' }
    // Issue 10 §4: a restored lease obeys the config as it is now: range, reserved ports, lifetime clamp.
    if (!pinhole && (l.externalPort < this.o.minPort || l.externalPort > this.o.maxPort)) return { ok: false, reason: 'out-of-range' }
    if (pinhole ? this.staticPins.has(pinKey(cl.address, l.protocol, l.externalPort)) : this.o.isReserved(l.externalPort))
      return { ok: false, reason: pinhole ? 'taken' : 'reserved' }
    if (!pinhole && !this.portFree(cl.c, cl.space, l.protocol, l.externalPort, true)) return { ok: false, reason: 'taken' }
    const lifetime =
      l.origin === 'upnp'
        ? Math.min(this.o.upnpMaxLifetimeSeconds, Math.max(this.o.minLifetimeSeconds, l.lifetimeSeconds))
        : this.clampLifetime(l.lifetimeSeconds)
    const lease: Lease = {
      id: this.nextId++,
      client: cl.address,
      protocol: l.protocol,
      internalPort: l.internalPort,
      externalPort: l.externalPort,
      targetPort: l.targetPort,
      pinhole,
      origin: l.origin,
      ...(l.nonce === undefined ? {} : { nonce: l.nonce }),
      ...(l.description === undefined ? {} : { description: l.description }),
      lifetimeSeconds: lifetime,
      createdAt: l.createdAt,
      expiresAt: Math.min(l.expiresAt, this.clock.now() + lifetime * 1000),
    }
    this.insert(cl.c, k, lease)
    return { ok: true, changes: [{ op: 'add', forward: toForward(lease) }], lease }
  }

  /** Forgets every port held for this address (issue 10 §3/§4: its peer was removed; a new peer there gets none of them). */
  releaseHolds(client: string): number {
    const cl = this.client(client, false)
    if (cl === null) return 0
    let n = 0
    for (const h of [...this.holdsByKey.values()]) {
      if (h.c !== cl.c) continue
      this.unhold(h)
      n++
    }
    return n
  }

  /** Held ports still in force (issue 10 §3), for the state file. */
  holds(): PortHold[] {
    const now = this.clock.now()
    const out: PortHold[] = []
    for (const h of this.holdsByKey.values())
      if (h.until > now) out.push({ client: h.client, internalPort: h.internalPort, externalPort: h.externalPort, until: h.until })
    return out
  }

  /** Re-establishes a hold read back from the state file (until: clock ms); false when lapsed, out of range or the port is taken. */
  restoreHold(h: PortHold): boolean {
    const cl = this.client(h.client)
    if (cl === null || this.o.holdMs <= 0) return false
    const until = Math.min(h.until, this.clock.now() + this.o.holdMs)
    if (until <= this.clock.now() || !this.portFree(cl.c, cl.space, 'tcp', h.externalPort) || !this.portFree(cl.c, cl.space, 'udp', h.externalPort))
      return false
    this.setHold({ c: cl.c, space: cl.space, client: cl.address, internalPort: h.internalPort, externalPort: h.externalPort, until })
    return true
  }

  private setHold(h: Hold): void {
    this.unhold(this.holdsByKey.get(h.c * PORTS + h.internalPort))
    this.unhold(this.holdsByPort[h.space].get(h.externalPort), false) // the port stays held
    this.holdsByKey.set(h.c * PORTS + h.internalPort, h)
    this.holdsByPort[h.space].set(h.externalPort, h)
  }

  /** Drops a hold; `freed`: its port is free for others now (not taken by a lease or another hold). */
  private unhold(h: Hold | undefined, freed = true): void {
    if (!h) return
    if (this.holdsByKey.get(h.c * PORTS + h.internalPort) === h) this.holdsByKey.delete(h.c * PORTS + h.internalPort)
    if (this.holdsByPort[h.space].get(h.externalPort) === h) {
      this.holdsByPort[h.space].delete(h.externalPort)
      if (freed) this.releases[h.space]!++
    }
  }

  /** A live hold on port p of space held by someone other than c (a lapsed one is dropped here). */
  private heldByOther(c: number, space: Space, p: number): boolean {
    const h = this.holdsByPort[space].get(p)
    if (!h || h.c === c) return false
    if (h.until <= this.clock.now()) {
      this.unhold(h)
      return false
    }
    return true
  }

  /**
   * The key of the client's lease for internal port P: its own, or (issue 10 §1) its symmetric
   * lease whose external port is P when it has no lease for P itself.
   */
  private symmetricKeyFor(c: number, protocol: Protocol, internalPort: number): number {
    const k = key(c, protocol, internalPort)
    if (internalPort === 0 || this.byKey.has(k)) return k
    const sk = key(c, protocol, 0)
    return this.byKey.get(sk)?.externalPort === internalPort ? sk : k
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
  addStatic(
    address: string,
    protocol: Protocol,
    externalPort: number,
    internalPort: number,
  ): { readonly ok: true; readonly changes: readonly ForwardChange[]; undo(): void } | { readonly ok: false; readonly reason: 'taken' | 'reserved' } {
    const cl = this.client(address)
    if (cl === null || !Number.isInteger(externalPort) || externalPort <= 0 || externalPort >= PORTS) return { ok: false, reason: 'taken' }
    const pinhole = cl.space === V6 && this.o.isPinholeClient(cl.address)
    const now = this.clock.now()
    const make = (): Lease => ({
      id: this.nextId++,
      client: cl.address,
      protocol,
      internalPort,
      externalPort,
      targetPort: internalPort,
      pinhole,
      origin: 'static',
      lifetimeSeconds: 0,
      createdAt: now,
      expiresAt: Infinity,
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
      this.indexStatic(cl.c, lease)
      return {
        ok: true,
        changes: [{ op: 'add', forward: toForward(lease) }],
        undo: () => {
          if (this.staticPins.get(pk) !== lease) return
          this.staticPins.delete(pk)
          this.unindexStatic(cl.c, lease)
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
    this.indexStatic(cl.c, lease)
    this.unhold(this.holdsByPort[cl.space].get(externalPort), false) // a static forward takes a held port
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
      this.unindexStatic(cl.c, pin)
      return {
        changes: [{ op: 'delete', forward: toForward(pin) }],
        undo: () => {
          if (this.staticPins.has(pk)) return
          this.staticPins.set(pk, pin)
          this.indexStatic(cl.c, pin)
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
        this.indexStatic(cl.c, lease)
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

  private indexStatic(c: number, lease: Lease): void {
    const tk = targetKey(c, lease.protocol, lease.targetPort)
    const list = this.staticByTarget.get(tk)
    if (list) list.push(lease)
    else this.staticByTarget.set(tk, [lease])
  }

  private unindexStatic(c: number, lease: Lease): void {
    const tk = targetKey(c, lease.protocol, lease.targetPort)
    const list = this.staticByTarget.get(tk)?.filter((l) => l !== lease)
    if (list && list.length > 0) this.staticByTarget.set(tk, list)
    else this.staticByTarget.delete(tk)
  }

  private dropStatic(sk: number, space: Space, lease: Lease): void {
    this.statics.delete(sk)
    const c = this.clientIds.get(lease.client)
    if (c !== undefined) this.unindexStatic(c, lease)
    const p = lease.externalPort
    this.used[space][p]! &= ~PROTO_BIT[lease.protocol]
    if (this.used[space][p] === 0) {
      this.owner[space][p] = 0
      this.releases[space]!++
    }
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
      // The port is in use again (by its holder, or, past exhaustion, by another client): no hold on it.
      if (this.holdsByKey.size > 0) {
        this.unhold(this.holdsByKey.get(c * PORTS + lease.internalPort))
        this.unhold(this.holdsByPort[space].get(lease.externalPort), false) // taken, not freed
      }
    }
    this.heap.push(lease.expiresAt, k)
    this.onChange('put', lease)
  }

  private drop(c: number, k: number, lease: Lease, hold = true): void {
    this.byKey.delete(k)
    let held: Hold | undefined
    if (hold && !lease.pinhole && this.o.holdMs > 0) {
      held = {
        c,
        space: spaceOf(lease.client),
        client: lease.client,
        internalPort: lease.internalPort,
        externalPort: lease.externalPort,
        until: this.clock.now() + this.o.holdMs,
      }
      this.setHold(held)
    }
    this.onChange('del', lease, held)
    const set = this.byClient.get(c)
    set?.delete(k)
    if (set && set.size === 0) this.byClient.delete(c)
    if (lease.pinhole) return
    const space = spaceOf(lease.client)
    const p = lease.externalPort
    this.used[space][p]! &= ~PROTO_BIT[lease.protocol]
    if (this.used[space][p] === 0) {
      this.owner[space][p] = 0
      if (!held) this.releases[space]!++ // a port held for its client is no more free for others than before
    }
  }

  /** Free for client c and protocol in space: in range, not reserved, owned by nobody or by c with this protocol unused. */
  private portFree(c: number, space: Space, protocol: Protocol, p: number, ignoreRange = false, ignoreHolds = false): boolean {
    if (!Number.isInteger(p) || p <= 0 || p >= PORTS) return false
    if (!ignoreRange && (p < this.o.minPort || p > this.o.maxPort || this.o.isReserved(p))) return false
    const owner = this.owner[space][p]!
    if (!(owner === 0 || (owner === c && (this.used[space][p]! & PROTO_BIT[protocol]) === 0))) return false
    return ignoreHolds || this.holdsByPort[space].size === 0 || !this.heldByOther(c, space, p)
  }

  private pickPort(c: number, space: Space, req: MapRequest): number | null {
    const other: Protocol = req.protocol === 'tcp' ? 'udp' : 'tcp'
    const companion = this.byKey.get(key(c, other, req.internalPort))
    // Issue 10 §3: the port held for this client and internal port comes first, whatever the suggestion.
    const held = this.holdsByKey.get(c * PORTS + req.internalPort)
    const candidates = [
      held && held.until > this.clock.now() ? held.externalPort : 0,
      companion?.externalPort ?? 0,
      req.suggestedExternalPort,
      req.internalPort,
    ]
    for (const p of candidates) if (p !== 0 && this.portFree(c, space, req.protocol, p)) return p
    const { minPort, maxPort } = this.o
    const span = maxPort - minPort + 1
    if (span <= 0) return null
    for (let i = 0; i < RANDOM_PROBES; i++) {
      const p = minPort + Math.floor(this.o.random() * span)
      if (this.portFree(c, space, req.protocol, p)) return p
    }
    // Dense table: one bounded scan from a random start (at most 65,535 cheap checks), unless the
    // last one found nothing and nothing was freed since.
    const start = Math.floor(this.o.random() * span)
    const miss = this.unheldMiss[space]
    const now = this.clock.now()
    if (!(miss && miss.releases === this.releases[space] && now - miss.at < MISS_TTL_MS)) {
      for (let i = 0; i < span; i++) {
        const p = minPort + ((start + i) % span)
        if (this.portFree(c, space, req.protocol, p)) return p
      }
      if (this.holdsByPort[space].size > 0) this.unheldMiss[space] = { at: now, releases: this.releases[space]! }
    }
    // Issue 10 §3: no port is free but held ones: another client's held port, the oldest hold first would be
    // fairer, but any is correct (the holder gets a new port on its next request).
    if (this.holdsByPort[space].size > 0) {
      for (let i = 0; i < span; i++) {
        const p = minPort + ((start + i) % span)
        if (this.portFree(c, space, req.protocol, p, false, true)) return p
      }
    }
    return null
  }
}

/** (client, protocol, internal port) packed in one safe integer: client number, 1 + 16 bits. */
const key = (c: number, protocol: Protocol, internalPort: number): number => c * 131072 + (protocol === 'tcp' ? 65536 : 0) + internalPort
const clientOf = (k: number): number => Math.floor(k / 131072)
const staticKey = (space: Space, protocol: Protocol, externalPort: number): number => space * 131072 + (protocol === 'tcp' ? 65536 : 0) + externalPort
const targetKey = (c: number, protocol: Protocol, port: number): string => `${c}/${protocol}/${port}`
const pinKey = (address: string, protocol: Protocol, port: number): string => `${address}/${protocol}/${port}`
const spaceOf = (address: string): Space => (address.includes(':') ? V6 : V4)
