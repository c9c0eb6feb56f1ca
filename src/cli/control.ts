/**
 * Operator commands: `wgpmp forwards` lists every forward, `wgpmp clients` every peer, `wgpmp
 * flush` removes every NAT-PMP/PCP lease; `--json` prints the API's JSON instead of a table. They
 * talk to the running daemon's HTTP API (api_listen, api_token_file). Without the API, `forwards`
 * reads the state file and its journal instead (every change the daemon acknowledged).
 */
import { request } from 'undici'
import { parseHostPort } from '../config/schema-api.js'
import type { Config } from '../config/schema.js'
import { WgpmpError } from '../core/errors.js'
import { loadApiToken } from '../http/api.js'
import type { ClientView, ForwardView } from '../http/schemas.js'
import { loadDurableState } from '../state/durable.js'

export interface Row {
  /** The client's name, else its id (or address). */
  readonly client: string
  readonly protocol: string
  /** What the internet reaches: "198.51.100.1:43956" (just the port when the address is unknown). */
  readonly external: string
  readonly target: string
  readonly origin: string
  readonly left: string
}

const fmtLeft = (s: number | null): string =>
  s === null
    ? 'static'
    : s >= 3600
      ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
      : s >= 60
        ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
        : `${s}s`

const endpoint = (address: string | null | undefined, port: number | string): string =>
  !address ? `:${port}` : address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`

export const rowOfView = (f: ForwardView, names: ReadonlyMap<string, string> = new Map()): Row => ({
  client: names.get(f.client_id) ?? f.client_id,
  protocol: f.protocol,
  external: endpoint(f.public_address, f.external_port),
  target: `${f.client_address ?? '(absent)'}:${f.internal_port}`,
  origin: f.origin,
  left: fmtLeft(f.seconds_left),
})

/** A fixed-width table, header first; columns in the order of `head`'s keys. */
export function formatTable<K extends string>(head: Readonly<Record<K, string>>, rows: readonly Readonly<Record<K, string>>[]): string {
  const keys = Object.keys(head) as K[]
  const all = [head, ...rows]
  const width = new Map(keys.map((k) => [k, Math.max(...all.map((r) => r[k].length))]))
  return (
    all
      .map((r) =>
        keys
          .map((k) => r[k].padEnd(width.get(k)!))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  )
}

/** The forwards table: client, protocol, public address:port, target, origin, time left. */
export function formatRows(rows: readonly Row[]): string {
  return formatTable({ client: 'CLIENT', protocol: 'PROTO', external: 'PUBLIC', target: 'TARGET', origin: 'ORIGIN', left: 'LEFT' }, rows)
}

const ago = (iso: string | null | undefined, nowMs: number): string => {
  if (!iso) return '-'
  const s = Math.max(0, Math.round((nowMs - Date.parse(iso)) / 1000))
  return s < 60 ? `${s}s ago` : s < 3600 ? `${Math.floor(s / 60)}m ago` : s < 86400 ? `${Math.floor(s / 3600)}h ago` : `${Math.floor(s / 86400)}d ago`
}

/** The clients table: name, id, addresses, state, last handshake, last request. */
export function formatClients(cs: readonly ClientView[], nowMs = Date.now()): string {
  return formatTable(
    { name: 'NAME', id: 'ID', addresses: 'ADDRESS', state: 'STATE', handshake: 'HANDSHAKE', request: 'LAST REQUEST' },
    cs.map((c) => ({
      name: c.name ?? '-',
      id: c.id,
      addresses: c.addresses.join(',') || '-',
      state: c.connected ? 'connected' : 'disconnected',
      handshake: ago(c.latest_handshake, nowMs),
      request: ago(c.last_request, nowMs),
    })),
  )
}

async function api(config: Readonly<Config>, method: 'GET' | 'DELETE', path: string): Promise<unknown> {
  const { token } = await loadApiToken(config.api_token_file!)
  const hp = parseHostPort(config.api_listen)!
  const host = hp.host.includes(':') ? `[${hp.host}]` : hp.host
  let r
  try {
    r = await request(`http://${host}:${hp.port}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}` },
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    })
  } catch (e) {
    throw new WgpmpError('WGPMP_API_UNREACHABLE', `cannot reach the daemon's API at ${config.api_listen} (${(e as Error).message}); is wgpmp running?`, {
      cause: e,
    })
  }
  const body = await r.body.json().catch(() => null)
  if (r.statusCode >= 400)
    throw new WgpmpError('WGPMP_API_REFUSED', `API ${method} ${path}: ${r.statusCode} ${(body as { error?: string } | null)?.error ?? ''}`.trim())
  return body
}

/** The `forwards` command's output (`json`: the API's JSON, or the state file's leases). */
export async function listForwards(config: Readonly<Config>, nowUnixMs = Date.now(), json = false): Promise<string> {
  if (config.api_token_file) {
    const fs = (await api(config, 'GET', '/api/portforwards')) as ForwardView[]
    if (json) return JSON.stringify(fs, null, 2) + '\n'
    const cs = (await api(config, 'GET', '/api/clients')) as ClientView[]
    const names = new Map(cs.filter((c) => c.name).map((c) => [c.id, c.name!]))
    return formatRows(fs.map((f) => rowOfView(f, names)))
  }
  // The snapshot with the journal replayed over it (the snapshot alone lags up to 10 s).
  const loaded = await loadDurableState(config.state_file, nowUnixMs)
  if (loaded.error) throw loaded.error
  const leases = (loaded.state?.leases ?? []).filter((l) => l.expiresAtUnixMs > nowUnixMs)
  if (json) return JSON.stringify({ leases, static_forwards: loaded.state?.static_forwards ?? [] }, null, 2) + '\n'
  const pub = config.public_address_v4 ?? null
  const rows: Row[] = leases.map((l) => ({
    client: l.client,
    protocol: l.protocol,
    external: endpoint(l.client.includes(':') ? null : pub, l.externalPort),
    target: `${l.client}:${l.targetPort}`,
    origin: l.origin ?? 'nat-pmp',
    left: fmtLeft(Math.ceil((l.expiresAtUnixMs - nowUnixMs) / 1000)),
  }))
  for (const f of loaded.state?.static_forwards ?? []) {
    rows.push({
      client: f.client,
      protocol: f.protocol,
      external: endpoint(pub, f.external_port),
      target: `?:${f.internal_port}`,
      origin: 'static',
      left: 'static',
    })
  }
  return `# from ${config.state_file} (the HTTP API is off; config-file static forwards are not listed)\n` + formatRows(rows)
}

/** The `clients` command: needs the API (peer state lives in the daemon). */
export async function listClients(config: Readonly<Config>, json = false): Promise<string> {
  if (!config.api_token_file)
    throw new WgpmpError(
      'WGPMP_CONFIG_INVALID',
      'clients talks to the running daemon through its HTTP API: set api_token_file (and api_listen) in the config. Without it: wg show',
    )
  const cs = (await api(config, 'GET', '/api/clients')) as ClientView[]
  return json ? JSON.stringify(cs, null, 2) + '\n' : formatClients(cs)
}

/** The `flush` command: needs the API (only the daemon can change its own table consistently). */
export async function flushForwards(config: Readonly<Config>): Promise<string> {
  if (!config.api_token_file) {
    throw new WgpmpError(
      'WGPMP_CONFIG_INVALID',
      'flush talks to the running daemon through its HTTP API: set api_token_file (and api_listen) in the config. To remove everything while wgpmp is stopped: nft delete table inet wgpmp, and delete the state file.',
    )
  }
  const r = (await api(config, 'DELETE', '/api/portforwards')) as { flushed: number }
  return `flushed ${r.flushed} lease(s); static forwards stay\n`
}
