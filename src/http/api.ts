/**
 * The HTTP API and page on node:http: bearer-token auth (constant-time), JSON bodies validated with
 * ajv against the schemas in schemas.ts, and a small table of routes. Never crashes on bad input:
 * every failure is a JSON error with a status code.
 *
 *   GET    /                                           the page (no data in it; it asks for the token)
 *   GET    /metrics                                    Prometheus text format
 *   GET    /api/portforwards                           every forward
 *   DELETE /api/portforwards                           remove every NAT-PMP/PCP lease (static forwards stay)
 *   GET    /api/clients                                every peer with its state
 *   GET    /api/clients/{id}/portforwards              one client's forwards (404: unknown client)
 *   POST   /api/clients/{id}/portforwards              create a static forward (201, 400, 404, 409)
 *   DELETE /api/clients/{id}/portforwards/{forwardId}  delete a static forward (204, 404, 409)
 *   POST   /api/clients/{id}/portforwards/{forwardId}/test  probe it from the host (200 ProbeResult, 404)
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { readFile, stat } from 'node:fs/promises'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Ajv, type ErrorObject } from 'ajv'
import type { Registry } from 'prom-client'
import { WgpmpError } from '../core/errors.js'
import type { Logger } from '../log.js'
import type { Lease } from '../core/forward.js'
import { formatRange, specFromBody, staticForwardBodySchema, type StaticForward, type StaticForwardBody, type StaticForwardSpec } from '../mappings/static.js'
import { type CreateResult, type DeleteResult } from '../forwarder/statics.js'
import type { TrackedPeer } from '../wireguard/peers.js'
import { renderPage } from './page.js'
import type { ProbeResult } from './probe.js'
import type { ClientView, ForwardView } from './schemas.js'

/** Largest request body accepted (413 beyond). A static forward body is under 100 bytes. */
export const MAX_BODY_BYTES = 64 * 1024

/** What the API needs from the daemon. Every method reads current state; none may throw for unknown ids. */
export interface ApiDeps {
  /** Every forward: NAT-PMP leases and static forwards (including those of peers not present now). */
  listForwards(): readonly ForwardView[]
  /** Every peer of the interface now. */
  listClients(): readonly ClientView[]
  /** StaticForwards.create, with the forward turned into its view. Rejects only on kernel/disk failure (500). */
  createStatic(clientId: string, spec: StaticForwardSpec): Promise<Exclude<CreateResult, { ok: true }> | { ok: true; forward: ForwardView }>
  /** StaticForwards.delete (or a NAT-PMP lease removal, at the daemon's choice). */
  deleteForward(clientId: string, forwardId: string): Promise<DeleteResult>
  /** Removes every NAT-PMP/PCP lease (the operator's flush); resolves with how many. Rejects on kernel failure (500). */
  flushLeases(): Promise<number>
  /** The registry /metrics serves (createMetrics().registry). */
  readonly metrics: Registry
  /** The server's tunnel address (wg_address_v4 without prefix), shown in the page's setup lines. */
  readonly gateway: string
  /** UPnP's description URL (http://<wg address>:<upnp_http_port>/rootDesc.xml), or null when UPnP is off: the page's UPnP setup line. */
  readonly upnpLocation?: string | null
  /** install (issue 12): the host's state (a firewall that drops forwards) for GET /api/host. */
  hostStatus?(): unknown
  // --- issue 13 (optional: tests and older callers leave them out) ---
  /** The public address a forward to this client address is reached at (shown as address:port). */
  readonly publicAddressOf?: (clientAddress: string | null) => string | null
  /** A client's latest request (ISO 8601), or null. */
  readonly lastRequestOf?: (client: ClientView) => string | null
  /** Probes a forward from the host (probe.ts). */
  readonly testForward?: (forward: ForwardView) => Promise<ProbeResult>
}

export interface ApiOptions {
  listen: { host: string; port: number }
  token: string
  deps: ApiDeps
  log: Logger
}

export interface ApiServer {
  readonly address: { address: string; port: number }
  /** Stops listening and closes open connections. Idempotent. */
  close(): Promise<void>
}

/**
 * Reads the API token: the first line of the file, surrounding whitespace trimmed. Rejects with
 * WGPMP_CONFIG_INVALID if the file is unreadable or the token is shorter than 16 characters
 * (guessable); `loose` is true when group or others can read the file (log a warning).
 */
export async function loadApiToken(path: string): Promise<{ token: string; loose: boolean }> {
  let text: string
  let mode = 0
  try {
    mode = (await stat(path)).mode
    text = await readFile(path, 'utf8')
  } catch (e) {
    throw new WgpmpError('WGPMP_CONFIG_INVALID', `api_token_file ${path}: cannot read (${(e as Error).message})`, { cause: e })
  }
  const token = (text.split('\n')[0] ?? '').trim()
  if (token.length < 16)
    throw new WgpmpError('WGPMP_CONFIG_INVALID', `api_token_file ${path}: the token must be at least 16 characters (e.g. openssl rand -hex 32)`)
  return { token, loose: (mode & 0o077) !== 0 }
}

// --- views: small functions the daemon calls to build ApiDeps answers ------------------------------

/** A static forward as the API shows it. address: the client's tunnel address now, or null. */
export function staticView(f: StaticForward, address: string | null): ForwardView {
  return {
    id: f.id,
    client_id: f.client,
    protocol: f.protocol,
    external_port: formatRange(f.external),
    internal_port: formatRange(f.internal),
    client_address: address,
    origin: 'static',
    lifetime_seconds: null,
    seconds_left: null,
    created_at: f.createdAt,
    removable: f.source === 'api',
  }
}

/**
 * A NAT-PMP or PCP lease as the API shows it (not removable: the client renews it; see the report). Lease times are monotonic clock ms; `clockNow` (clock.now())
 * and `wallNow` (Date.now()) taken together turn createdAt into wall time.
 */
export function leaseView(l: Lease, clientId: string, clockNow: number, wallNow: number): ForwardView {
  return {
    id: `pmp-${l.id}`,
    client_id: clientId,
    protocol: l.protocol,
    external_port: l.externalPort,
    internal_port: l.targetPort,
    client_address: l.client,
    origin: l.origin,
    ...(l.description === undefined ? {} : { description: l.description }), // UPnP: client text, shown escaped by the page
    lifetime_seconds: l.origin === 'static' ? null : l.lifetimeSeconds,
    seconds_left: l.origin === 'static' || !Number.isFinite(l.expiresAt) ? null : Math.max(0, Math.ceil((l.expiresAt - clockNow) / 1000)),
    created_at: new Date(wallNow - (clockNow - l.createdAt)).toISOString(),
    removable: false,
  }
}

/** A tracked peer as the API shows it. */
export function clientView(p: TrackedPeer): ClientView {
  return {
    id: p.id,
    name: p.name,
    public_key: p.publicKey,
    addresses: [...p.addresses],
    endpoint: p.endpoint,
    connected: p.connected,
    latest_handshake: p.latestHandshake === 0 ? null : new Date(p.latestHandshake * 1000).toISOString(),
    rx_bytes: p.rxBytes,
    tx_bytes: p.txBytes,
  }
}

// --- server ---------------------------------------------------------------------------------------

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly details?: string[],
  ) {
    super(message)
  }
}

const ID = /^[A-Za-z0-9_-]{1,64}$/
const JSON_HEADERS = {
  'content-type': 'application/json; charset=utf-8',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
} as const

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest()

/** Starts the API. Rejects if it cannot listen (address in use, bad host). */
export async function startApi(opts: ApiOptions): Promise<ApiServer> {
  const { deps, log } = opts
  const tokenDigest = digest(opts.token)
  const validateBody = new Ajv({ allErrors: true, strict: true }).compile<StaticForwardBody>(staticForwardBodySchema)

  const authorized = (req: IncomingMessage): boolean => {
    const m = /^Bearer +(\S+) *$/i.exec(req.headers.authorization ?? '')
    // Hashing first makes the comparison constant-time whatever the length of the guess.
    return timingSafeEqual(digest(m?.[1] ?? ''), tokenDigest) && m !== null
  }

  const send = (res: ServerResponse, status: number, body?: unknown): void => {
    if (body === undefined) {
      res.writeHead(status, { 'cache-control': 'no-store' }).end()
      return
    }
    const text = JSON.stringify(body)
    res.writeHead(status, { ...JSON_HEADERS, 'content-length': Buffer.byteLength(text) }).end(text)
  }

  const readJson = async (req: IncomingMessage): Promise<unknown> => {
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
    if (type !== 'application/json') throw new HttpError(415, 'content-type must be application/json')
    const declared = Number(req.headers['content-length'] ?? 0)
    if (declared > MAX_BODY_BYTES) throw new HttpError(413, `body larger than ${MAX_BODY_BYTES} bytes`)
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length
      if (size > MAX_BODY_BYTES) throw new HttpError(413, `body larger than ${MAX_BODY_BYTES} bytes`)
      chunks.push(chunk)
    }
    const text = Buffer.concat(chunks).toString('utf8')
    if (text.trim() === '') throw new HttpError(400, 'empty body: expected a JSON object')
    try {
      return JSON.parse(text)
    } catch (e) {
      throw new HttpError(400, `invalid JSON: ${(e as Error).message}`)
    }
  }

  const forwards = (): ForwardView[] => {
    const pub = deps.publicAddressOf
    return pub ? deps.listForwards().map((f) => ({ ...f, public_address: pub(f.client_address) })) : [...deps.listForwards()]
  }
  const clients = (): ClientView[] => {
    const last = deps.lastRequestOf
    return last ? deps.listClients().map((c) => ({ ...c, last_request: last(c) })) : [...deps.listClients()]
  }
  const knownClient = (id: string): boolean => ID.test(id) && deps.listClients().some((c) => c.id === id)

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const method = req.method ?? 'GET'
    const path = (req.url ?? '/').split('?')[0]!
    if (path === '/') {
      if (method !== 'GET' && method !== 'HEAD') throw new HttpError(405, 'method not allowed')
      const page = renderPage(deps.gateway, deps.upnpLocation ?? null)
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'content-length': Buffer.byteLength(page.html),
        'content-security-policy': page.csp,
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
        'x-frame-options': 'DENY',
      })
      res.end(method === 'HEAD' ? undefined : page.html)
      return
    }
    if (!authorized(req)) {
      res.setHeader('www-authenticate', 'Bearer')
      send(res, 401, { error: 'unauthorized' })
      return
    }
    if (path === '/metrics') {
      if (method !== 'GET') throw new HttpError(405, 'method not allowed')
      const text = await deps.metrics.metrics()
      res.writeHead(200, { 'content-type': deps.metrics.contentType, 'cache-control': 'no-store' }).end(text)
      return
    }
    if (path === '/api/portforwards') {
      if (method === 'DELETE') {
        send(res, 200, { flushed: await deps.flushLeases() })
        return
      }
      if (method !== 'GET') throw new HttpError(405, 'method not allowed')
      send(res, 200, forwards())
      return
    }
    if (path === '/api/host') {
      // install (issue 12): host firewall findings for the page
      if (method !== 'GET') throw new HttpError(405, 'method not allowed')
      send(res, 200, deps.hostStatus?.() ?? { host_firewall: null })
      return
    }
    if (path === '/api/clients') {
      if (method !== 'GET') throw new HttpError(405, 'method not allowed')
      send(res, 200, clients())
      return
    }
    const one = /^\/api\/clients\/([^/]+)\/portforwards$/.exec(path)
    if (one) {
      const id = decodeSegment(one[1]!)
      if (method === 'GET') {
        if (!knownClient(id)) throw new HttpError(404, 'unknown client')
        send(
          res,
          200,
          forwards().filter((f) => f.client_id === id),
        )
        return
      }
      if (method === 'POST') {
        if (!knownClient(id)) throw new HttpError(404, 'unknown client')
        const body = await readJson(req)
        if (!validateBody(body)) {
          const details = bodyErrors(validateBody.errors ?? [])
          throw new HttpError(400, details.join('; '), details)
        }
        const spec = specFromBody(body)
        if (!spec.ok) throw new HttpError(400, spec.error, [spec.error])
        const r = await deps.createStatic(id, spec.spec)
        if (r.ok) send(res, 201, r.forward)
        else if (r.refusal === 'not-a-client') throw new HttpError(404, 'unknown client')
        else throw new HttpError(409, r.message)
        return
      }
      throw new HttpError(405, 'method not allowed')
    }
    const test = /^\/api\/clients\/([^/]+)\/portforwards\/([^/]+)\/test$/.exec(path)
    if (test) {
      if (method !== 'POST') throw new HttpError(405, 'method not allowed')
      const id = decodeSegment(test[1]!)
      const f = forwards().find((x) => x.client_id === id && x.id === decodeSegment(test[2]!))
      if (!f || !deps.testForward) throw new HttpError(404, 'unknown forward')
      send(res, 200, await deps.testForward(f))
      return
    }
    const del = /^\/api\/clients\/([^/]+)\/portforwards\/([^/]+)$/.exec(path)
    if (del) {
      if (method !== 'DELETE') throw new HttpError(405, 'method not allowed')
      const id = decodeSegment(del[1]!)
      const fid = decodeSegment(del[2]!)
      if (!knownClient(id)) throw new HttpError(404, 'unknown client')
      if (!ID.test(fid)) throw new HttpError(404, 'unknown forward')
      const r = await deps.deleteForward(id, fid)
      if (r === 'deleted') send(res, 204)
      else if (r === 'config-owned') throw new HttpError(409, 'this forward is defined in the config file; remove it there')
      else throw new HttpError(404, r === 'client-not-found' ? 'unknown client' : 'unknown forward')
      return
    }
    throw new HttpError(404, 'not found')
  }

  const server = createServer({ maxHeaderSize: 16 * 1024, requestTimeout: 30_000, headersTimeout: 10_000 }, (req, res) => {
    const started = performance.now()
    handle(req, res)
      .catch((err: unknown) => {
        if (err instanceof HttpError) {
          if (err.status === 405) res.setHeader('allow', allowFor(req.url ?? '/'))
          // After a 413 the rest of the body is unread: close rather than parse it as the next request.
          if (err.status === 413) res.setHeader('connection', 'close')
          send(res, err.status, err.details && err.details.length > 1 ? { error: err.message, details: err.details } : { error: err.message })
          return
        }
        log.error({ err, method: req.method, path: req.url }, 'api: request failed')
        if (!res.headersSent) send(res, 500, { error: 'internal error' })
        else res.destroy()
      })
      .finally(() => {
        log.debug(
          { method: req.method, path: (req.url ?? '').split('?')[0], status: res.statusCode, ms: Math.round(performance.now() - started) },
          'api request',
        )
      })
  })
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n')
    else socket.destroy()
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.listen.port, opts.listen.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const a = server.address() as AddressInfo
  log.info({ address: a.address, port: a.port }, 'HTTP API listening')
  let closing: Promise<void> | null = null
  return {
    address: { address: a.address, port: a.port },
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
      return closing
    },
  }
}

/** One line per offending field; a port that is neither a number nor a range gets one message, not three. */
export function bodyErrors(errors: readonly ErrorObject[]): string[] {
  const out = new Map<string, string>()
  for (const e of errors) {
    const field = e.instancePath.replace(/^\//, '').replace(/\//g, '.')
    if (e.keyword === 'required')
      out.set((e.params as { missingProperty: string }).missingProperty, `${(e.params as { missingProperty: string }).missingProperty}: required`)
    else if (e.keyword === 'additionalProperties') {
      const extra = (e.params as { additionalProperty: string }).additionalProperty
      out.set(extra, `${extra}: unknown field`)
    } else if (field === 'external_port' || field === 'internal_port') out.set(field, `${field}: must be a port 1..65535 or a range like "27015-27030"`)
    else if (e.keyword === 'enum')
      out.set(field, `${field}: must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}`)
    else if (!out.has(field)) out.set(field, `${field || '(body)'}: ${e.message ?? 'invalid'}`)
  }
  return [...out.values()]
}

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    return '' // malformed %-escape: matches no id, so 404
  }
}

function allowFor(url: string): string {
  const path = url.split('?')[0]!
  if (/^\/api\/clients\/[^/]+\/portforwards$/.test(path)) return 'GET, POST'
  if (/^\/api\/clients\/[^/]+\/portforwards\/[^/]+$/.test(path)) return 'DELETE'
  if (/^\/api\/clients\/[^/]+\/portforwards\/[^/]+\/test$/.test(path)) return 'POST'
  if (path === '/api/portforwards') return 'GET, DELETE'
  return path === '/' ? 'GET, HEAD' : 'GET'
}
