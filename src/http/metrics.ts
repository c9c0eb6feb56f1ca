/** Prometheus metrics for one daemon: a registry per instance (never prom-client's global default). */
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import { Opcode, ResultCode } from '../protocol/constants.js'

export interface MetricSources {
  /** Current forwards, one entry per (protocol, origin) with its count; static ranges count each port. */
  forwardCounts: () => Iterable<{ protocol: 'tcp' | 'udp'; origin: 'nat-pmp' | 'pcp' | 'static'; count: number }>
  /** Peers on the interface, and how many have a recent handshake. */
  peers: () => { total: number; connected: number }
}

export interface Metrics {
  readonly registry: Registry
  /** NatPmpService's `count` hook: one answered request. */
  countRequest(op: number, result: number): void
  /** GroupCommit's `onBatch` hook: (elements, milliseconds, ok). */
  observeBatch(size: number, ms: number, ok: boolean): void
}

const opName = (op: number): string =>
  op === Opcode.PublicAddress ? 'public_address' : op === Opcode.MapUdp ? 'map_udp' : op === Opcode.MapTcp ? 'map_tcp' : `other`
const RESULT_NAMES = new Map<number, string>(Object.entries(ResultCode).map(([k, v]) => [v, k.replace(/[A-Z]/g, (c, i: number) => (i ? '_' : '') + c.toLowerCase())]))
const resultName = (r: number): string => RESULT_NAMES.get(r) ?? 'other'

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
      for (const p of ['tcp', 'udp'] as const) for (const o of ['nat-pmp', 'pcp', 'static'] as const) this.set({ protocol: p, origin: o }, 0)
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
  const batches = new Histogram({
    name: 'wgpmp_driver_batch_seconds',
    help: 'Time to apply one batch of forward changes in the kernel.',
    labelNames: ['result'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  })
  return {
    registry,
    countRequest: (op, result) => requests.inc({ opcode: opName(op), result: resultName(result) }),
    observeBatch: (_size, ms, ok) => batches.observe({ result: ok ? 'ok' : 'error' }, ms / 1000),
  }
}
