/**
 * The UpnpBackend on the forwarder: UPnP's calls become forwarder calls, and the forwarder does
 * admission, the table change, the kernel commit, the undo and the state, as for NAT-PMP and PCP.
 *
 * The table keys a lease by (client, protocol, internal port); UPnP names one by (protocol,
 * external port). So a client has one external port per (protocol, internal port): an exact
 * AddPortMapping for an internal port it already maps elsewhere moves that mapping (the newest
 * request wins; a restarted app asking for another port is not stuck behind its old lease), and one
 * onto an external port it already holds for another internal port replaces that one. Both happen
 * in one kernel batch (forwarder.mapReplacing), undone together if refused.
 */
import type { Lease, Protocol } from '../../core/forward.js'
import type { Refusal } from '../../core/refusal.js'
import type { Forwarder } from '../../forwarder/forwarder.js'
import type { UpnpAddRequest, UpnpAddResult, UpnpBackend, UpnpMapping, UpnpRefusal } from './backend.js'

export interface ForwarderBackendDeps {
  forwarder: Forwarder
  publicAddress: () => string
  /** Lease stored for NewLeaseDuration 0, and the longest granted for any (upnp_permanent_lease_seconds). */
  leaseCapSeconds: number
}

const other = (p: Protocol): Protocol => (p === 'tcp' ? 'udp' : 'tcp')

/** UPnP's answer for a refusal: the one place it is chosen (service.ts turns these into error codes). */
export const upnpRefusalFor = (r: Refusal): UpnpRefusal =>
  r === 'no-ports'
    ? 'no-ports'
    : r === 'client-limit'
      ? 'client-limit'
      : r === 'not-a-client' || r === 'bad-client'
        ? 'not-a-client'
        : r === 'port-unavailable'
          ? 'port-unavailable'
          : r === 'kernel-refused' || r === 'internal-error'
            ? 'kernel-refused'
            : 'port-taken'

/** A lease UPnP can show and delete: the client's own, dynamic, IPv4, with a real internal port. */
const visible = (l: Lease | undefined, client: string): l is Lease =>
  l !== undefined && l.client === client && l.origin !== 'static' && l.internalPort > 0 && !l.pinhole && !l.client.includes(':')

export class ForwarderBackend implements UpnpBackend {
  constructor(private readonly d: ForwarderBackendDeps) {}

  isClient(address: string): Promise<boolean> {
    return this.d.forwarder.admit(address)
  }

  publicAddress(): string {
    return this.d.publicAddress()
  }

  private view(l: Lease): UpnpMapping {
    return {
      protocol: l.protocol,
      externalPort: l.externalPort,
      internalClient: l.client,
      internalPort: l.targetPort,
      description: l.description ?? '',
      secondsLeft: Math.max(1, this.d.forwarder.table.secondsLeft(l)),
    }
  }

  list(client: string): readonly UpnpMapping[] {
    return this.d.forwarder.table
      .leasesOf(client)
      .filter((l) => visible(l, client))
      .sort((a, b) => a.externalPort - b.externalPort || a.protocol.localeCompare(b.protocol))
      .map((l) => this.view(l))
  }

  get(client: string, protocol: Protocol, externalPort: number): UpnpMapping | undefined {
    const l = this.d.forwarder.table.byExternal(protocol, externalPort)
    return visible(l, client) ? this.view(l) : undefined
  }

  async add(req: UpnpAddRequest): Promise<UpnpAddResult> {
    const t = this.d.forwarder.table
    const cap = this.d.leaseCapSeconds
    const replace: { protocol: Protocol; internalPort: number }[] = []
    if (req.exact) {
      const here = t.byExternal(req.protocol, req.externalPort)
      const there = t.byExternal(other(req.protocol), req.externalPort)
      if ((here && !visible(here, req.client)) || (there && there.client !== req.client)) return { ok: false, refusal: 'port-taken' }
      const same = t.get(req.client, req.protocol, req.internalPort)
      if (here && here !== same) replace.push({ protocol: req.protocol, internalPort: here.internalPort }) // its other mapping on this port
      if (same && same.externalPort !== req.externalPort) replace.push({ protocol: req.protocol, internalPort: req.internalPort }) // moved here
    }
    const r = await this.d.forwarder.mapReplacing(
      {
        client: req.client,
        protocol: req.protocol,
        internalPort: req.internalPort,
        suggestedExternalPort: req.externalPort,
        lifetimeSeconds: req.leaseSeconds === 0 ? cap : req.leaseSeconds,
        maxLifetimeSeconds: cap,
        origin: 'upnp',
        description: req.description,
        ...(req.exact ? { exactPort: true } : {}),
      },
      replace,
    )
    return r.ok ? { ok: true, externalPort: r.lease.externalPort, leaseSeconds: r.lease.lifetimeSeconds } : { ok: false, refusal: upnpRefusalFor(r.refusal) }
  }

  async remove(client: string, protocol: Protocol, externalPort: number): Promise<'ok' | 'not-found' | 'kernel-refused'> {
    const l = this.d.forwarder.table.byExternal(protocol, externalPort)
    if (!visible(l, client)) return 'not-found'
    const r = await this.d.forwarder.deleteWhere(client, protocol, (x) => x.externalPort === externalPort && visible(x, client), 'upnp')
    return r.ok ? (r.removed.length > 0 ? 'ok' : 'not-found') : r.refusal === 'not-a-client' ? 'not-found' : 'kernel-refused'
  }

  async removeRange(client: string, protocol: Protocol, start: number, end: number): ReturnType<UpnpBackend['removeRange']> {
    const r = await this.d.forwarder.deleteWhere(client, protocol, (l) => visible(l, client) && l.externalPort >= start && l.externalPort <= end, 'upnp')
    return r.ok ? { ok: true, removed: r.removed.length } : { ok: false, refusal: 'kernel-refused' }
  }
}
