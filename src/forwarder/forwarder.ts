/**
 * Forwarder: the protocol-neutral lease service every front-end (NAT-PMP, PCP, UPnP) calls. Each
 * operation does, in one place and in this order: admission (is the sender a client?), the table
 * change, the kernel commit (group commit), the undo if the kernel refuses, and the notice that
 * the state changed (expiry timer, state file). A front-end only translates its wire format to
 * these calls and a Refusal to its own result codes.
 *
 * Ordering promises (what a client is told is true when it is told):
 * - a success resolves only after the forward is in the kernel;
 * - a renewal (or retransmit) of a lease whose first commit is still in flight waits for it;
 * - a client's deletes run one after another, so a retransmitted delete is not answered before
 *   the first one's commit;
 * - a large removal goes in rounds of `chunk`: a freed port is never handed out while its old
 *   forward is still in the kernel, and requests that arrive meanwhile wait for one round only.
 */
import type { DynamicOrigin, ForwardChange, Lease, Protocol } from '../core/forward.js'
import type { Refusal } from '../core/refusal.js'
import type { Logger } from '../log.js'
import type { MapRequest as TableMapRequest, MappingTable, Removal } from '../mappings/table.js'

export interface ForwarderDeps {
  table: MappingTable
  /** Commits changes to the kernel (and their side effects: flows, state); rejects if refused. */
  commit: (changes: readonly ForwardChange[]) => Promise<void>
  /** May this source address ask? (a peer's tunnel address inside the WireGuard prefix) */
  isClient: (address: string) => boolean | Promise<boolean>
  /** Called after the table changed (arms the expiry timer, marks the state dirty). */
  changed: () => void
  /** Leases per batch in a large removal (the driver's bulk-delete size). */
  chunk: number
  log: Logger
  /** Told of every lease that starts or ends (notifications); must not throw or block. */
  events?: LeaseEvents
  /** The client's id and name for log lines (a peer's, by its tunnel address). */
  who?: (address: string) => { clientId?: string | undefined; clientName?: string | null | undefined }
}

/** Why a lease ended. */
export type RemovalReason = 'deleted' | 'expired' | 'peer-removed' | 'peer-disconnected' | 'peer-address-changed' | 'flushed'

export interface LeaseEvents {
  created(lease: Lease): void
  /** A new lease whose forward the kernel refused (it was undone: the client was told no). */
  refused(lease: Lease): void
  removed(leases: readonly Lease[], reason: RemovalReason): void
}

/** A table request (its fields documented there) whose origin is always said: the front-end's protocol. */
export interface MapRequest extends TableMapRequest {
  readonly origin: DynamicOrigin
}

export type MapResult = { readonly ok: true; readonly lease: Lease; readonly created: boolean } | { readonly ok: false; readonly refusal: Refusal }

export interface DeleteRequest {
  readonly client: string
  /** Both for PCP's "all protocols". */
  readonly protocols: readonly Protocol[]
  /** 0: every lease of those protocols (NAT-PMP and PCP delete-all). */
  readonly internalPort: number
  /** PCP: a delete of a mapping created with another nonce is refused. */
  readonly nonce?: string
  /** Who asked, for the log. */
  readonly via: DynamicOrigin
}

export type DeleteResult = { readonly ok: true; readonly removed: readonly Lease[] } | { readonly ok: false; readonly refusal: Refusal }

/** Why leases leave without their client asking. */
export type WithdrawReason = 'peer removed' | 'peer disconnected' | 'peer address changed'
const withdrawReason: Record<WithdrawReason, RemovalReason> = {
  'peer removed': 'peer-removed',
  'peer disconnected': 'peer-disconnected',
  'peer address changed': 'peer-address-changed',
}

export class Forwarder {
  /** Commits of new leases still in flight: a renewal of such a lease waits for it. */
  private readonly inflight = new Map<Lease, Promise<void>>()
  /** Each client's deletes, one after another. */
  private readonly removals = new Map<string, Promise<void>>()

  constructor(private readonly d: ForwarderDeps) {}

  get table(): MappingTable {
    return this.d.table
  }

  /** Admission alone (a front-end that must answer "not authorized" before parsing further). */
  async admit(address: string): Promise<boolean> {
    return await this.d.isClient(address)
  }

  /** Creates or renews a lease; resolves once its forward is in the kernel. Never rejects. */
  map(req: MapRequest): Promise<MapResult> {
    return this.mapReplacing(req, [])
  }

  /**
   * map(), first taking out the client's own leases for `replace` (protocol, internal port), all in
   * one kernel batch and undone together if refused: UPnP's AddPortMapping names a mapping by its
   * external port, so moving one (the same internal port onto another external port, or another
   * internal port onto this external port) is one change, never a moment with both or neither.
   */
  async mapReplacing(req: MapRequest, replace: readonly { protocol: Protocol; internalPort: number }[]): Promise<MapResult> {
    try {
      if (!(await this.d.isClient(req.client))) return this.notAClient(req.client, req.origin)
      const removals = replace.map((r) => this.d.table.remove(req.client, r.protocol, r.internalPort))
      const undoRemovals = (): void => {
        for (const r of [...removals].reverse()) r.undo()
      }
      const out = this.d.table.map(req)
      if (!out.ok) {
        undoRemovals()
        this.d.log.info(
          { client: req.client, ...this.who(req.client), protocol: req.protocol, internalPort: req.internalPort, reason: out.reason, via: req.origin },
          'map refused',
        )
        return { ok: false, refusal: out.reason }
      }
      const gone = removals.flatMap((r) => r.removed)
      try {
        if (gone.length === 0) await this.commitLease(out.lease, out.changes)
        else await this.d.commit([...removals.flatMap((r) => r.changes), ...out.changes])
      } catch (err) {
        out.undo()
        undoRemovals()
        this.d.changed()
        this.d.log.error(
          { err, client: req.client, ...this.who(req.client), protocol: req.protocol, externalPort: out.lease.externalPort, via: req.origin },
          'forward refused by the kernel',
        )
        if (out.changes.length > 0) this.d.events?.refused(out.lease)
        return { ok: false, refusal: 'kernel-refused' }
      }
      const l = out.lease
      const created = out.changes.length > 0
      if (gone.length > 0) {
        this.d.log.info({ client: req.client, forwards: summary(gone), via: req.origin }, 'lease replaced')
        this.d.events?.removed(gone, 'deleted')
      }
      const fields = {
        client: req.client,
        ...this.who(req.client),
        protocol: l.protocol,
        externalPort: l.externalPort,
        internalPort: l.targetPort,
        lifetimeSeconds: l.lifetimeSeconds,
        renewal: !created,
        via: req.origin,
      }
      if (created) {
        this.d.log.info(fields, 'lease created')
        this.d.events?.created(l)
      } else this.d.log.debug(fields, 'lease renewed')
      this.d.changed()
      return { ok: true, lease: l, created }
    } catch (err) {
      // A bug, not bad input: the front-end answers its generic failure rather than nothing.
      this.d.log.error({ err, client: req.client }, 'map: internal error')
      return { ok: false, refusal: 'internal-error' }
    }
  }

  /**
   * Deletes the client's own dynamic leases of one protocol that `pick` selects (UPnP deletes by
   * external port or range), in one batch, after the client's other deletes. Never rejects.
   */
  async deleteWhere(client: string, protocol: Protocol, pick: (l: Lease) => boolean, via: DynamicOrigin): Promise<DeleteResult> {
    try {
      if (!(await this.d.isClient(client))) return this.notAClient(client, via)
      return await this.serialRemoval(client, undefined, async (): Promise<DeleteResult> => {
        const ports = this.d.table
          .leasesOf(client)
          .filter((l) => l.protocol === protocol && l.origin !== 'static' && pick(l))
          .map((l) => l.internalPort)
        const rs = ports.map((p) => this.d.table.remove(client, protocol, p))
        const removed = rs.flatMap((r) => r.removed)
        try {
          if (removed.length > 0) await this.d.commit(rs.flatMap((r) => r.changes))
        } catch (err) {
          for (const r of [...rs].reverse()) r.undo()
          this.d.log.error({ err, client, via }, 'delete refused by the kernel')
          return { ok: false, refusal: 'kernel-refused' }
        } finally {
          this.d.changed()
        }
        if (removed.length > 0) {
          this.d.log.info({ client, ...this.who(client), forwards: summary(removed), count: removed.length, via }, 'lease deleted')
          this.d.events?.removed(removed, 'deleted')
        }
        return { ok: true, removed }
      })
    } catch (err) {
      this.d.log.error({ err, client }, 'delete: internal error')
      return { ok: false, refusal: 'internal-error' }
    }
  }

  /** Deletes one lease, or all of a client's (internalPort 0), of the given protocols. Never rejects. */
  async delete(req: DeleteRequest): Promise<DeleteResult> {
    try {
      if (!(await this.d.isClient(req.client))) return this.notAClient(req.client, req.via)
      const one = req.internalPort !== 0 && req.protocols.length === 1 ? `${req.protocols[0]}/${req.internalPort}` : undefined
      return await this.serialRemoval(req.client, one, async (): Promise<DeleteResult> => {
        const first = req.protocols[0]
        const existing = req.internalPort === 0 || first === undefined ? undefined : this.d.table.get(req.client, first, req.internalPort)
        if (req.nonce !== undefined && existing?.nonce !== undefined && existing.nonce !== req.nonce) return { ok: false, refusal: 'nonce-mismatch' }
        const removed: Lease[] = []
        try {
          for (const p of req.protocols) removed.push(...(await this.removeInChunks((limit) => this.d.table.remove(req.client, p, req.internalPort, limit))))
        } catch (err) {
          this.d.log.error({ err, client: req.client, internalPort: req.internalPort, via: req.via }, 'delete refused by the kernel')
          this.d.changed()
          return { ok: false, refusal: 'kernel-refused' }
        }
        if (removed.length > 0) {
          this.d.log.info(
            { client: req.client, ...this.who(req.client), internalPort: req.internalPort, forwards: summary(removed), count: removed.length, via: req.via },
            'lease deleted',
          )
          this.d.events?.removed(removed, 'deleted')
        }
        this.d.changed()
        return { ok: true, removed }
      })
    } catch (err) {
      this.d.log.error({ err, client: req.client }, 'delete: internal error')
      return { ok: false, refusal: 'internal-error' }
    }
  }

  /** Withdraws every lease of a client address (its peer went away); static forwards stay. Never rejects. */
  async withdraw(client: string, why: WithdrawReason): Promise<readonly Lease[]> {
    try {
      const removed = await this.removeInChunks((limit) => this.d.table.removeClient(client, limit))
      if (removed.length > 0) {
        this.d.log.info({ client, ...this.who(client), why, count: removed.length, forwards: summary(removed) }, 'leases withdrawn')
        this.d.events?.removed(removed, withdrawReason[why])
      }
      return removed
    } catch (err) {
      this.d.log.error({ err, client, why }, 'cannot withdraw leases')
      return []
    } finally {
      this.d.changed()
    }
  }

  /** Removes every dynamic lease (the operator's flush); static forwards stay. Rejects if the kernel refuses a round. */
  async flush(): Promise<number> {
    try {
      const removed = await this.removeInChunks((limit) => this.d.table.removeAllDynamic(limit))
      this.d.log.info({ count: removed.length }, 'all leases flushed by the operator')
      if (removed.length > 0) this.d.events?.removed(removed, 'flushed')
      return removed.length
    } finally {
      this.d.changed()
    }
  }

  /**
   * Commits the removal of leases whose time is up (the expiry timer's round); rejects if the
   * kernel refuses, and the timer undoes and retries.
   */
  async expire(r: Removal): Promise<void> {
    await this.d.commit(r.changes)
    if (r.removed.length > 0) this.d.events?.removed(r.removed, 'expired')
  }

  private who(client: string): { clientId?: string | undefined; clientName?: string | null | undefined } {
    return this.d.who?.(client) ?? {}
  }

  private notAClient(source: string, via: DynamicOrigin): { ok: false; refusal: Refusal } {
    this.d.log.info({ source, via }, 'refused, not a client')
    return { ok: false, refusal: 'not-a-client' }
  }

  /** Commits a new lease's changes (registered in `inflight`), or waits for a renewed lease's first commit. */
  private async commitLease(lease: Lease, changes: readonly ForwardChange[]): Promise<void> {
    if (changes.length === 0) {
      await this.inflight.get(lease)
      await this.d.commit(changes) // no kernel change: the renewal's journal record on disk
      return
    }
    const p = this.d.commit(changes)
    this.inflight.set(lease, p)
    try {
      await p
    } finally {
      this.inflight.delete(lease)
    }
  }

  /**
   * A large removal in rounds of `chunk`: each round takes its leases out of the table and commits
   * their deletes before the next round frees any more ports. If a round is refused it is undone
   * and this rejects: the rounds before it stay done (table and kernel agree).
   */
  private async removeInChunks(take: (limit: number) => Removal): Promise<Lease[]> {
    const removed: Lease[] = []
    // Bounded: every round that continues removed a full chunk, and the table is finite.
    for (;;) {
      const r = take(this.d.chunk)
      if (r.removed.length === 0) return removed
      try {
        await this.d.commit(r.changes)
      } catch (err) {
        r.undo()
        throw err
      }
      removed.push(...r.removed)
      if (r.removed.length < this.d.chunk) return removed
    }
  }

  /**
   * Runs a client's delete after the deletes it must follow. A delete of one port (`key`, e.g.
   * "tcp/8080") waits only for a delete of the same port and for a delete-all of that client, so
   * deletes of different ports run together and share one kernel batch, as adds do (one chain per
   * client made every delete a batch of its own: ~1,000 deletes/s against 10,000 adds/s). A
   * delete-all (no key) waits for every delete of the client in flight, and later deletes wait for it.
   */
  private async serialRemoval<T>(client: string, key: string | undefined, run: () => Promise<T>): Promise<T> {
    const slot = key === undefined ? client : `${client}#${key}`
    const before: Promise<void>[] = []
    if (key === undefined) {
      for (const [k, p] of this.removals) if (k === client || k.startsWith(client + '#')) before.push(p)
    } else {
      for (const k of [client, slot]) {
        const p = this.removals.get(k)
        if (p) before.push(p)
      }
    }
    const mine = (before.length === 0 ? Promise.resolve() : Promise.all(before)).then(run)
    const settled = mine.then(
      () => {},
      () => {},
    )
    this.removals.set(slot, settled)
    try {
      return await mine
    } finally {
      if (this.removals.get(slot) === settled) this.removals.delete(slot)
    }
  }
}

/** The first forwards of a removal, for a log line. */
const summary = (ls: readonly Lease[]): string[] => ls.slice(0, 20).map((l) => `${l.protocol}/${l.externalPort}`)
