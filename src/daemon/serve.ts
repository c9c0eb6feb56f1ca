/** What clients and operators talk to: NAT-PMP, PCP and UPnP on the forwarder; the HTTP API, page and /metrics. */
import type { Cidr4, Cidr6 } from '../core/ip.js'
import { startFrontends } from '../frontends/start.js'
import type { HostFirewall } from '../host/firewall.js'
import type { ListeningPortsCache } from '../host/listening.js'
import type { Metrics } from '../http/metrics.js'
import { LastSeen, probeView } from '../http/probe.js'
import { apiDeps } from '../http/sources.js'
import { startHttp } from '../http/start.js'
import type { PeerTracker } from '../wireguard/peers.js'
import type { Context } from './deps.js'
import type { Forwarding } from './forwarding.js'

export interface Serving {
  readonly udp: { address: string; port: number }
  readonly udp6: { address: string; port: number } | null
  readonly http: { address: string; port: number } | null
}

export async function serve(
  ctx: Context,
  o: {
    forwarding: Forwarding
    tracker: PeerTracker
    metrics: Metrics
    hostPorts: ListeningPortsCache
    hostFw: HostFirewall | null
    epochStart: number
    publicV4: string
    publicV6: string | null
    /** The public address a client's forwards are reached on (its own, for an IPv6 pinhole). */
    publicFor: (client: string) => string | null
    wg4: Cidr4
    wg6: Cidr6 | null
  },
): Promise<Serving> {
  const { config, deps, clock, log, components } = ctx
  const { forwarder, statics } = o.forwarding
  const metrics = o.metrics
  const lastSeen = new LastSeen()
  const { udp, udp6, upnpLocation } = await startFrontends({
    forwarder,
    clock,
    epochStart: o.epochStart,
    publicV4: o.publicV4,
    publicV6: o.publicV6,
    log,
    components,
    wg: { interface: config.wg_interface, v4: o.wg4.address, v6: o.wg6?.address ?? null, v4Cidr: config.wg_address_v4, v6Cidr: config.wg_address_v6 },
    pcp: config.pcp_enabled,
    rate: { perSecond: config.rate_limit_per_second, burst: config.rate_limit_burst },
    upnp: { enabled: config.upnp_enabled, httpPort: config.upnp_http_port, leaseCapSeconds: config.upnp_permanent_lease_seconds },
    listen: deps.listen,
    listenV6: deps.listenV6,
    upnpListen: deps.upnpListen,
    count: {
      natpmp: (op, r) => metrics.countRequest(op, r),
      pcp: (op, r) => metrics.countPcpRequest(op, r),
      drop: (why) => metrics.countDrop(why),
      upnp: (action, error) => metrics.countUpnpRequest(action, error),
      ssdp: (outcome) => metrics.countSsdpSearch(outcome),
    },
    seen: (from) => lastSeen.note(from, clock.wall()),
    before: () => o.hostPorts.refreshSoon(), // never waits for the host: a read older than 250 ms is redone in the background
  })
  const http = await startHttp({
    apiListen: config.api_listen,
    tokenFile: config.api_token_file,
    metricsListen: config.metrics_listen,
    log,
    components,
    deps: () => ({
      ...apiDeps({ table: forwarder.table, statics, tracker: o.tracker, forwarder, clock, metrics, gateway: o.wg4.address, hostFirewall: o.hostFw }),
      upnpLocation,
      // what the internet sees, the latest request, and the Test button
      publicAddressOf: (a) => (a === null ? null : o.publicFor(a)),
      lastRequestOf: (c) => lastSeen.latest(c.addresses),
      testForward: (f) =>
        probeView(f, {
          localV4: o.wg4.address,
          localV6: o.wg6?.address ?? null,
          hostFirewallBlocks: deps.hostFirewallBlocks ?? (() => o.hostFw?.current.blocksForwards ?? false),
        }),
    }),
  })
  return { udp: udp.address, udp6: udp6?.address ?? null, http }
}
