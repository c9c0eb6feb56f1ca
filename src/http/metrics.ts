/** Prometheus metrics for one daemon: a registry per instance (never prom-client's global default). */
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import { ORIGINS, type Origin } from '../core/forward.js'
import { Opcode, PcpResult, ResultCode } from '../protocol/constants.js'

export interface MetricSources {
  /** Current forwards, one entry per (protocol, origin) with its count; static ranges count each port. */
  forwardCounts: () => Iterable<{ protocol: 'tcp' | 'udp'; origin: Origin; count: number }>
  /** Peers on the interface, and how many have a recent handshake. */
  peers: () => { total: number; connected: number }
}

export interface Metrics {
  readonly registry: Registry
  /** NatPmpService's `count` hook: one answered request. */
  countRequest(op: number, result: number): void
  /** PcpService's `count` hook: one answered PCP request (RFC 6887 result codes). */
  countPcpRequest(op: number, result: number): void
  /** The UPnP front-end's control hook: one SOAP action answered (`action` from the known set or 'other'/'invalid'; error 0 = success). */
  countUpnpRequest(action: string, error: number): void
  /** The SSDP responder's hook: one M-SEARCH and what became of it. */
  countSsdpSearch(outcome: string): void
  /** GroupCommit's `onBatch` hook: (elements, milliseconds, ok). */
  observeBatch(size: number, ms: number, ok: boolean): void
  /** A request dropped without a reply: 'rate-limit' (per-client limit) or 'undecodable'. */
  countDrop(reason: 'rate-limit' | 'undecodable'): void
  /** The kernel table was found deleted or flushed and rebuilt. */
  countRebuild(reason: string): void
  /** Notification events per channel and outcome: sent, failed (gave up after retries), dropped (queue full). Issue 13. */
  countNotification(channel: string, outcome: 'sent' | 'failed' | 'dropped', events: number): void
}

const opName = (op: number): string =>
  op === Opcode.PublicAddress ? 'public_address' : op === Opcode.MapUdp ? 'map_udp' : op === Opcode.MapTcp ? 'map_tcp' : `other`
const RESULT_NAMES = new Map<number, string>(
  Object.entries(ResultCode).map(([k, v]) => [v, k.replace(/[A-Z]/g, (c, i: number) => (i ? '_' : '') + c.toLowerCase())]),
)
const resultName = (r: number): string => RESULT_NAMES.get(r) ?? 'other'
const PCP_OPS = ['announce', 'map', 'peer']
const PCP_RESULT_NAMES = new Map<number, string>(
  Object.entries(PcpResult).map(([k, v]) => [v, k.replace(/[A-Z]/g, (c, i: number) => (i ? '_' : '') + c.toLowerCase())]),
)

/**
 * Creates the registry and its metrics: wgpmp_forwards{protocol,origin}, wgpmp_natpmp_requests_total
 * {opcode,result}, wgpmp_driver_batch_seconds{result} (histogram), wgpmp_peers and
 * wgpmp_peers_connected. Gauges are read from `sources` at scrape time, so they cannot drift.
 */
export function createMetrics(sources: MetricSources): Metrics {
  const registry = new Registry()
  new Gauge({
    name: 'wgpmp_forwards',
    help: 'Forwards installed now, by protocol and origin (a static range counts each port).',
    labelNames: ['protocol', 'origin'] as const,
    registers: [registry],
    collect() {
      this.reset()
      for (const p of ['tcp', 'udp'] as const) for (const o of ORIGINS) this.set({ protocol: p, origin: o }, 0)
      for (const c of sources.forwardCounts()) this.inc({ protocol: c.protocol, origin: c.origin }, c.count)
    },
  })
  new Gauge({
    name: 'wgpmp_peers',
    help: 'WireGuard peers on the interface.',
    registers: [registry],
    collect() {
      this.set(sources.peers().total)
    },
  })
  new Gauge({
    name: 'wgpmp_peers_connected',
    help: 'Peers with a handshake within peer_disconnect_seconds.',
    registers: [registry],
    collect() {
      this.set(sources.peers().connected)
    },
  })
  const requests = new Counter({
    name: 'wgpmp_natpmp_requests_total',
    help: 'NAT-PMP requests answered, by opcode and result code (RFC 6886 §3.5).',
    labelNames: ['opcode', 'result'] as const,
    registers: [registry],
  })
  const pcpRequests = new Counter({
    name: 'wgpmp_pcp_requests_total',
    help: 'PCP requests answered, by opcode and result code (RFC 6887 §7.4).',
    labelNames: ['opcode', 'result'] as const,
    registers: [registry],
  })
  const upnpRequests = new Counter({
    name: 'wgpmp_upnp_requests_total',
    help: 'UPnP IGD control requests answered, by SOAP action and result (ok, or the UPnP error code: 718 conflict, 606 not authorized, ...).',
    labelNames: ['action', 'result'] as const,
    registers: [registry],
  })
  const ssdpSearches = new Counter({
    name: 'wgpmp_ssdp_searches_total',
    help: 'SSDP M-SEARCHes received on the WireGuard address, by outcome (answered, no-match, not-a-client, rate-limit, not-a-search).',
    labelNames: ['outcome'] as const,
    registers: [registry],
  })
  const batches = new Histogram({
    name: 'wgpmp_driver_batch_seconds',
    help: 'Time to apply one batch of forward changes in the kernel.',
    labelNames: ['result'] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  })
  const drops = new Counter({
    name: 'wgpmp_requests_dropped_total',
    help: 'Requests dropped without a reply, by reason (rate-limit: a client over its per-second limit).',
    labelNames: ['reason'] as const,
    registers: [registry],
  })
  const rebuilds = new Counter({
    name: 'wgpmp_table_rebuilds_total',
    help: 'Times the nftables table was found deleted or flushed (a firewall reload) and rebuilt.',
    labelNames: ['reason'] as const,
    registers: [registry],
  })
  const notifications = new Counter({
    name: 'wgpmp_notifications_total',
    help: "Notification events per channel and outcome: sent, failed (delivery gave up after its retries), dropped (the channel's queue was full).",
    labelNames: ['channel', 'outcome'] as const,
    registers: [registry],
  })
  return {
    registry,
    countRequest: (op, result) => requests.inc({ opcode: opName(op), result: resultName(result) }),
    countPcpRequest: (op, result) => pcpRequests.inc({ opcode: PCP_OPS[op] ?? 'other', result: PCP_RESULT_NAMES.get(result) ?? 'other' }),
    countUpnpRequest: (action, error) => upnpRequests.inc({ action, result: error === 0 ? 'ok' : String(error) }),
    countSsdpSearch: (outcome) => ssdpSearches.inc({ outcome }),
    observeBatch: (_size, ms, ok) => batches.observe({ result: ok ? 'ok' : 'error' }, ms / 1000),
    countDrop: (reason) => drops.inc({ reason }),
    countRebuild: (reason) => rebuilds.inc({ reason }),
    countNotification: (channel, outcome, n) => notifications.inc({ channel, outcome }, n),
  }
}
