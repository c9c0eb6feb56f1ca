/**
 * The UpnpBackend on today's MappingTable and commit path (the same seams NAT-PMP and PCP use:
 * table.map, commitOutcome, serialRemoval). Small on purpose: the forwarder replaces it.
 *
 * The table keys a lease by (client, protocol, internal port); UPnP names one by (protocol,
 * external port). So a client has one external port per (protocol, internal port): an exact
 * AddPortMapping for an internal port it already maps elsewhere moves that mapping (the newest
 * request wins; a restarted app asking for another port is not stuck behind its old lease), and one
 * onto an external port it already holds for another internal port replaces that one. Both happen
 * in one kernel batch, undone together if refused.
 */
import type { Protocol } from '../drivers/driver.js'
import type { Lease, RefusalReason, Removal } from '../mappings/table.js'
import { commitOutcome, serialRemoval, type ServiceDeps } from '../server/natpmp-service.js'
import type { UpnpAddRequest, UpnpAddResult, UpnpBackend, UpnpMapping, UpnpRefusal } from './backend.js'

export interface TableBackendDeps extends Pick<ServiceDeps, 'table' | 'commit' | 'inflight' | 'removals' | 'changed'> {
  isClient: (address: string) => boolean | Promise<boolean>
  publicAddress: () => string
  /** Lease stored for NewLeaseDuration 0, and the longest granted for any (upnp_permanent_lease_seconds). */
  leaseCapSeconds: number
  /** Runs before an add (the daemon refreshes the host's listening ports, as for NAT-PMP). */
  beforeAdd?: () => Promise<void>
}

const other = (p: Protocol): Protocol => (p === 'tcp' ? 'udp' : 'tcp')

const refusalOf = (r: RefusalReason): UpnpRefusal =>
  r === 'no-ports' ? 'no-ports' : r === 'client-limit' ? 'client-limit' : r === 'bad-client' ? 'not-a-client' : r === 'port-unavailable' ? 'port-unavailable' : 'port-taken'

/** A lease UPnP can show and delete: the client's own, dynamic, IPv4, with a real internal port. */
const visible = (l: Lease | undefined, client: string): l is Lease =>
  l !== undefined && l.client === client && l.origin !== 'static' && l.internalPort > 0 && !l.pinhole && !l.client.includes(':')

export class TableBackend implements UpnpBackend {
  constructor(private readonly d: TableBackendDeps) {}

  async isClient(address: string): Promise<boolean> {
    return this.d.isClient(address)
  }

  publicAddress(): string {
    return this.d.publicAddress()
  }

  private view(l: Lease): UpnpMapping {
    return {
      protocol: l.protocol, externalPort: l.externalPort, internalClient: l.client, internalPort: l.targetPort,
      description: l.description ?? '', secondsLeft: Math.max(1, this.d.table.secondsLeft(l)),
    }
  }

  list(client: string): readonly UpnpMapping[] {
    return this.d.table.leasesOf(client).filter((l) => visible(l, client))
      .sort((a, b) => a.externalPort - b.externalPort || a.protocol.localeCompare(b.protocol))
      .map((l) => this.view(l))
  }

  get(client: string, protocol: Protocol, externalPort: number): UpnpMapping | undefined {
    const l = this.d.table.byExternal(protocol, externalPort)
    return visible(l, client) ? this.view(l) : undefined
  }

  async add(req: UpnpAddRequest): Promise<UpnpAddResult> {
    if (!(await this.d.isClient(req.client))) return { ok: false, refusal: 'not-a-client' }
    await this.d.beforeAdd?.()
    const t = this.d.table
    const cap = this.d.leaseCapSeconds
    const map = {
      client: req.client, protocol: req.protocol, internalPort: req.internalPort, suggestedExternalPort: req.externalPort,
      lifetimeSeconds: req.leaseSeconds === 0 ? cap : req.leaseSeconds, maxLifetimeSeconds: cap, origin: 'upnp' as const, description: req.description,
    }
    const removals: Removal[] = []
    if (req.exact) {
      const here = t.byExternal(req.protocol, req.externalPort)
      const there = t.byExternal(other(req.protocol), req.externalPort)
      if ((here && !visible(here, req.client)) || (there && there.client !== req.client)) return { ok: false, refusal: 'port-taken' }
      const same = t.get(req.client, req.protocol, req.internalPort)
      if (here && here !== same) removals.push(t.remove(req.client, req.protocol, here.internalPort)) // its other mapping on this port
      if (same && same.externalPort !== req.externalPort) removals.push(t.remove(req.client, req.protocol, req.internalPort)) // moved here
    }
    const undoRemovals = (): void => {
      for (const r of removals.reverse()) r.undo()
    }
    const out = t.map({ ...map, ...(req.exact ? { exactPort: true } : {}) })
    if (!out.ok) {
      undoRemovals()
      return { ok: false, refusal: refusalOf(out.reason) }
    }
    try {
      if (removals.length === 0) await commitOutcome(this.d, out.lease, out.changes)
      else await this.d.commit([...removals.flatMap((r) => r.changes), ...out.changes])
    } catch {
      out.undo()
      undoRemovals()
      this.d.changed()
      return { ok: false, refusal: 'kernel-refused' }
    }
    this.d.changed()
    return { ok: true, externalPort: out.lease.externalPort, leaseSeconds: out.lease.lifetimeSeconds }
  }

  remove(client: string, protocol: Protocol, externalPort: number): Promise<'ok' | 'not-found' | 'kernel-refused'> {
    return serialRemoval(this.d, client, async () => {
      const l = this.d.table.byExternal(protocol, externalPort)
      if (!visible(l, client)) return 'not-found'
      const r = this.d.table.remove(client, protocol, l.internalPort)
      try {
        await this.d.commit(r.changes)
      } catch {
        r.undo()
        return 'kernel-refused'
      } finally {
        this.d.changed()
      }
      return 'ok'
    })
  }

  removeRange(client: string, protocol: Protocol, start: number, end: number): ReturnType<UpnpBackend['removeRange']> {
    return serialRemoval(this.d, client, async () => {
      const t = this.d.table
      // At most max_forwards_per_client leases: one batch.
      const ports = t.leasesOf(client).filter((l) => visible(l, client) && l.protocol === protocol && l.externalPort >= start && l.externalPort <= end).map((l) => l.internalPort)
      const rs = ports.map((p) => t.remove(client, protocol, p))
      try {
        await this.d.commit(rs.flatMap((r) => r.changes))
      } catch {
        for (const r of rs.reverse()) r.undo()
        return { ok: false as const, refusal: 'kernel-refused' as const }
      } finally {
        this.d.changed()
      }
      return { ok: true as const, removed: rs.reduce((n, r) => n + r.removed.length, 0) }
    })
  }
}
