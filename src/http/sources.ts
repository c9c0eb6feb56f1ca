/** What the API, the page and /metrics read: built from the running components, for daemon.ts. */
import type { Clock } from '../core/clock.js'
import type { Origin, Protocol } from '../core/forward.js'
import type { Forwarder } from '../forwarder/forwarder.js'
import type { HostFirewall } from '../host/firewall.js'
import type { StaticForwards } from '../forwarder/statics.js'
import type { MappingTable } from '../mappings/table.js'
import type { PeerTracker } from '../wireguard/peers.js'
import { clientView, leaseView, staticView, type ApiDeps } from './api.js'
import type { Metrics, MetricSources } from './metrics.js'

export function metricSources(d: { table: MappingTable; tracker: PeerTracker }): MetricSources {
  return {
    forwardCounts: () => {
      const m = new Map<string, { protocol: Protocol; origin: Origin; count: number }>()
      for (const l of d.table.leases()) {
        const e = m.get(l.protocol + l.origin) ?? { protocol: l.protocol, origin: l.origin, count: 0 }
        e.count++
        m.set(l.protocol + l.origin, e)
      }
      return m.values()
    },
    peers: () => ({ total: d.tracker.peers().length, connected: d.tracker.connectedCount }),
  }
}

export function apiDeps(d: {
  table: MappingTable
  statics: StaticForwards
  tracker: PeerTracker
  forwarder: Forwarder
  clock: Clock
  metrics: Metrics
  gateway: string
  hostFirewall: HostFirewall | null
}): ApiDeps {
  const addressOfClient = (id: string): string | null => d.tracker.peerById(id)?.addresses[0] ?? null
  return {
    listForwards: () => {
      const cn = d.clock.now()
      const wn = d.clock.wall()
      return [
        ...d.table
          .leases()
          .filter((l) => l.origin !== 'static')
          .map((l) => leaseView(l, d.tracker.peerByAddress(l.client)?.id ?? l.client, cn, wn)),
        ...d.statics.all().map((f) => staticView(f, addressOfClient(f.client))),
      ]
    },
    listClients: () => d.tracker.peers().map(clientView),
    createStatic: async (id, spec) => {
      const r = await d.statics.create(id, spec)
      return r.ok ? { ok: true, forward: staticView(r.forward, addressOfClient(id)) } : r
    },
    deleteForward: (id, fid) => d.statics.delete(id, fid),
    flushLeases: () => d.forwarder.flush(),
    metrics: d.metrics.registry,
    gateway: d.gateway,
    hostStatus: () => ({ host_firewall: d.hostFirewall ? hostFirewallView(d.hostFirewall) : null }),
  }
}

/** The host firewall check as /api/host shows it. */
function hostFirewallView(fw: HostFirewall): unknown {
  const c = fw.current
  return {
    blocks_forwards: c.blocksForwards,
    blocks: c.blocks.map((b) => ({ chain: `${b.family} ${b.table} ${b.chain}`, backend: b.backend, packet: b.packet, by: b.by })),
    fix: [...new Set(c.blocks.map((b) => b.fix))],
    inserted: c.inserted,
    error: c.error,
  }
}
