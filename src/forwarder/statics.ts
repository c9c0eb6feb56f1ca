/**
 * StaticForwards: static forwards from the config file and the API. Definitions live here (config)
 * and in the store (API); installed ports live in the lease table (via StaticSink) and the kernel.
 */
import { systemClock, type Clock } from '../core/clock.js'
import type { ForwardChange } from '../core/forward.js'
import type { Logger } from '../log.js'
import {
  describeConflict,
  formatSpec,
  forwardId,
  overlaps,
  releaseStatic,
  reserveStatic,
  type Conflict,
  type StaticForward,
  type StaticForwardSpec,
  type StaticSink,
} from '../mappings/static.js'
import type { StaticStore } from '../state/static-store.js'

export type CreateResult =
  | { readonly ok: true; readonly forward: StaticForward }
  | { readonly ok: false; readonly refusal: 'not-a-client' }
  | { readonly ok: false; readonly refusal: 'port-unavailable'; readonly message: string }

export type DeleteResult = 'deleted' | 'client-not-found' | 'forward-not-found' | 'config-owned'

export interface StaticForwardsDeps {
  store: StaticStore
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
  /** Its wall() gives createdAt (default: the system clock). */
  clock?: Pick<Clock, 'wall'>
}

/**
 * Static forwards from the config file and the API: definitions live here (and in the store),
 * installed ports live in the table (via StaticSink) and the kernel.
 */
export class StaticForwards {
  private readonly config = new Map<string, StaticForward>()
  private readonly clock: Pick<Clock, 'wall'>

  constructor(private readonly d: StaticForwardsDeps) {
    this.clock = d.clock ?? systemClock
  }

  /**
   * Sets the config-file forwards (client id -> specs). Returns one problem line per forward that
   * overlaps another config forward; those are skipped. Call before activate().
   */
  setConfigForwards(byClient: ReadonlyMap<string, readonly StaticForwardSpec[]>): string[] {
    this.config.clear()
    const problems: string[] = []
    const createdAt = new Date(this.clock.wall()).toISOString()
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
   * one batch, then stores it. 'port-unavailable' when any port is held by another static forward, a
   * NAT-PMP lease or is reserved. Rejects (and changes nothing) if the kernel or the disk refuses.
   */
  async create(clientId: string, spec: StaticForwardSpec): Promise<CreateResult> {
    const addresses = this.d.addressesOf(clientId)
    const address = addresses[0]
    if (address === undefined) return { ok: false, refusal: 'not-a-client' }
    const clash = this.all().find((f) => overlaps(f, spec))
    if (clash) return { ok: false, refusal: 'port-unavailable', message: `${formatSpec(spec)} overlaps the static forward ${formatSpec(clash)}` }
    const first = reserveStatic(this.d.sink, address, spec)
    if (!first.ok) return { ok: false, refusal: 'port-unavailable', message: describeConflict(first.conflict) }
    const r = this.alsoOn(clientId, addresses.slice(1), spec, first)
    const forward: StaticForward = { ...spec, id: forwardId(spec), client: clientId, source: 'api', createdAt: new Date(this.clock.wall()).toISOString() }
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
      await this.d
        .commit(back.changes)
        .catch((err: unknown) => this.d.log.error({ err, forward: forward.id }, 'static forward: cannot withdraw after a state write failed'))
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
  private alsoOn(
    clientId: string,
    others: readonly string[],
    spec: StaticForwardSpec,
    first: { changes: ForwardChange[]; undo(): void },
  ): { changes: ForwardChange[]; undo(): void } {
    const changes = [...first.changes]
    const undos = [() => first.undo()]
    for (const address of others) this.reserveOrWarn(clientId, address, spec, changes, undos)
    return {
      changes,
      undo: () => {
        for (const u of undos.reverse()) u()
      },
    }
  }

  /** Reserves spec at address into changes/undos; a conflict is logged and returned, not thrown. */
  private reserveOrWarn(
    clientId: string,
    address: string,
    spec: StaticForwardSpec,
    changes: ForwardChange[],
    undos: (() => void)[],
  ): { added: number; conflict?: Conflict } {
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
    return {
      changes: rs.flatMap((r) => r.changes),
      undo: () => {
        for (const r of rs.reverse()) r.undo()
      },
    }
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
