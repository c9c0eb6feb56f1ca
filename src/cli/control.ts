/**
 * Operator commands: `wgpmp forwards` lists every forward, `wgpmp flush` removes every NAT-PMP/PCP
 * lease. Both talk to the running daemon's HTTP API (api_listen, api_token_file). Without the API,
 * `forwards` reads the state file and its journal instead (every change the daemon acknowledged).
 */
import { request } from 'undici'
import { parseHostPort } from '../config/schema-api.js'
import type { Config } from '../config/schema.js'
import { WgpmpError } from '../core/errors.js'
import { loadApiToken } from '../http/api.js'
import type { ForwardView } from '../http/schemas.js'
import { loadDurableState } from '../state/durable.js'

export interface Row {
  readonly protocol: string
  readonly external: string
  readonly target: string
  readonly origin: string
  readonly left: string
  readonly client: string
}

const fmtLeft = (s: number | null): string => (s === null ? 'static' : s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m` : s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`)

export const rowOfView = (f: ForwardView): Row => ({
  protocol: f.protocol,
  external: String(f.external_port),
  target: `${f.client_address ?? '(absent)'}:${f.internal_port}`,
  origin: f.origin,
  left: fmtLeft(f.seconds_left),
  client: f.client_id,
})

/** A fixed-width table, one forward per line, header first. */
export function formatRows(rows: readonly Row[]): string {
  const head: Row = { protocol: 'PROTO', external: 'PUBLIC', target: 'CLIENT ADDRESS:PORT', origin: 'ORIGIN', left: 'LEFT', client: 'CLIENT' }
  const all = [head, ...rows]
  const keys = ['protocol', 'external', 'target', 'origin', 'left', 'client'] as const
  const width = Object.fromEntries(keys.map((k) => [k, Math.max(...all.map((r) => r[k].length))])) as Record<(typeof keys)[number], number>
  return all.map((r) => keys.map((k) => r[k].padEnd(width[k])).join('  ').trimEnd()).join('\n') + '\n'
}

async function api(config: Readonly<Config>, method: 'GET' | 'DELETE', path: string): Promise<unknown> {
  const { token } = await loadApiToken(config.api_token_file!)
  const hp = parseHostPort(config.api_listen)!
  const host = hp.host.includes(':') ? `[${hp.host}]` : hp.host
  let r
  try {
    r = await request(`http://${host}:${hp.port}${path}`, { method, headers: { authorization: `Bearer ${token}` }, headersTimeout: 10_000, bodyTimeout: 10_000 })
  } catch (e) {
    throw new WgpmpError('WGPMP_API_UNREACHABLE', `cannot reach the daemon's API at ${config.api_listen} (${(e as Error).message}); is wgpmp running?`, { cause: e })
  }
  const body = await r.body.json().catch(() => null)
  if (r.statusCode >= 400) throw new WgpmpError('WGPMP_API_REFUSED', `API ${method} ${path}: ${r.statusCode} ${(body as { error?: string } | null)?.error ?? ''}`.trim())
  return body
}

/** The `forwards` command's output. */
export async function listForwards(config: Readonly<Config>, nowUnixMs = Date.now()): Promise<string> {
  if (config.api_token_file) return formatRows((await api(config, 'GET', '/api/portforwards') as ForwardView[]).map(rowOfView))
  // Issue 10 §2: the snapshot with the journal replayed over it (the snapshot alone lags up to 10 s).
  const loaded = await loadDurableState(config.state_file, nowUnixMs)
  if (loaded.error) throw loaded.error
  const leases = loaded.state?.leases ?? []
  const rows: Row[] = leases
    .filter((l) => l.expiresAtUnixMs > nowUnixMs)
    .map((l) => ({
      protocol: l.protocol,
      external: String(l.externalPort),
      target: `${l.client}:${l.targetPort}`,
      origin: l.origin ?? 'nat-pmp',
      left: fmtLeft(Math.ceil((l.expiresAtUnixMs - nowUnixMs) / 1000)),
      client: l.client,
    }))
  for (const f of loaded.state?.static_forwards ?? []) {
    rows.push({ protocol: f.protocol, external: String(f.external_port), target: `?:${f.internal_port}`, origin: 'static', left: 'static', client: f.client })
  }
  return `# from ${config.state_file} (the HTTP API is off; config-file static forwards are not listed)\n` + formatRows(rows)
}

/** The `flush` command: needs the API (only the daemon can change its own table consistently). */
export async function flushForwards(config: Readonly<Config>): Promise<string> {
  if (!config.api_token_file) {
    throw new WgpmpError('WGPMP_CONFIG_INVALID', 'flush talks to the running daemon through its HTTP API: set api_token_file (and api_listen) in the config. To remove everything while wgpmp is stopped: nft delete table inet wgpmp, and delete the state file.')
  }
  const r = (await api(config, 'DELETE', '/api/portforwards')) as { flushed: number }
  return `flushed ${r.flushed} lease(s); static forwards stay\n`
}
