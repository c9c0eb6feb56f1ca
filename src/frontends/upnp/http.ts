/**
 * The UPnP HTTP server: description documents (GET/HEAD) and SOAP control (POST), on the
 * WireGuard address only, for clients only. Never throws on input; every request is bounded in
 * size and time.
 *
 * - Only a client (a peer's tunnel address inside the WireGuard prefix) is served; anyone else gets
 *   403 and the connection is closed.
 * - No eventing (CallStranger, CVE-2020-12695): SUBSCRIBE and UNSUBSCRIBE get 405, as does any
 *   method a path does not take; unknown methods 501.
 * - Control bodies above SOAP_BODY_MAX_BYTES get 413 (announced by Content-Length or counted).
 * - Header, request and keep-alive timeouts are short: a real control point sends one small
 *   request and reads one small reply.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Logger } from '../../log.js'
import { CONTROL, PATHS, SCPD_CIF, SCPD_IP1, SCPD_IP2 } from './description.js'
import { buildFault, parseSoapRequest, SOAP_BODY_MAX_BYTES } from './soap.js'
import type { ControlReply, UpnpService } from './service.js'

export interface UpnpHttpOptions {
  readonly host: string
  readonly port: number
  readonly rootDescription: string
  readonly service: Pick<UpnpService, 'control'>
  readonly isClient: (address: string) => Promise<boolean>
  /** SERVER header. */
  readonly server: string
  readonly log: Logger
  /** Called after each control request (metrics). */
  readonly onControl?: (reply: ControlReply) => void
  /** Milliseconds (tests shorten them). */
  readonly headersTimeoutMs?: number
  readonly requestTimeoutMs?: number
}

export interface UpnpHttpServer {
  readonly address: { address: string; port: number }
  close(): Promise<void>
}

const XML = 'text/xml; charset="utf-8"'
/** Simultaneous connections; a tunnel's clients need a handful. */
const MAX_CONNECTIONS = 128

/** An IPv4-mapped IPv6 remote address as plain IPv4. */
export const plainAddress = (a: string | undefined): string => (a ?? '').replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '')

export async function startUpnpHttp(o: UpnpHttpOptions): Promise<UpnpHttpServer> {
  const documents: Readonly<Record<string, string>> = {
    [PATHS.root]: o.rootDescription,
    [PATHS.scpdCif]: SCPD_CIF,
    [PATHS.scpdIp1]: SCPD_IP1,
    [PATHS.scpdIp2]: SCPD_IP2,
  }
  const send = (res: ServerResponse, status: number, body: string, extra: Record<string, string> = {}): void => {
    if (res.headersSent || res.destroyed) return
    const buf = Buffer.from(body, 'utf8')
    res.writeHead(status, { ...(body === '' ? {} : { 'Content-Type': XML }), 'Content-Length': String(buf.byteLength), Server: o.server, EXT: '', ...extra })
    res.end(res.req.method === 'HEAD' ? undefined : buf)
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const client = plainAddress(req.socket.remoteAddress)
    if (!(await o.isClient(client))) {
      o.log.debug({ source: client }, 'upnp http: refused, not a client')
      send(res, 403, '', { Connection: 'close' })
      return
    }
    const path = (req.url ?? '').split('?')[0]!
    const method = req.method ?? ''
    const doc = documents[path]
    const serviceType = CONTROL[path]
    if (method === 'GET' || method === 'HEAD') {
      if (doc !== undefined) send(res, 200, doc)
      else if (serviceType !== undefined) send(res, 405, '', { Allow: 'POST' })
      else send(res, 404, '')
      return
    }
    if (method === 'POST') {
      if (serviceType === undefined) {
        send(res, doc !== undefined ? 405 : 404, '', doc !== undefined ? { Allow: 'GET, HEAD' } : {})
        return
      }
      const declared = Number(req.headers['content-length'] ?? 0)
      if (declared > SOAP_BODY_MAX_BYTES) {
        send(res, 413, '', { Connection: 'close' }) // the rest of the body is discarded and the connection closed
        req.resume()
        return
      }
      const body = await readBody(req, SOAP_BODY_MAX_BYTES)
      if (body === null) {
        send(res, 413, '', { Connection: 'close' })
        return
      }
      const soapAction = req.headers['soapaction']
      const parsed = parseSoapRequest(body, Array.isArray(soapAction) ? soapAction[0] : soapAction)
      if (!parsed.ok) {
        o.log.debug({ client, why: parsed.why, code: parsed.error }, 'upnp http: bad SOAP request')
        o.onControl?.({ status: 500, body: '', action: 'invalid', error: parsed.error })
        send(res, 500, buildFault(parsed.error))
        return
      }
      const reply = await o.service.control(serviceType, client, parsed.value)
      o.onControl?.(reply)
      send(res, reply.status, reply.body)
      return
    }
    // No eventing at all (CallStranger): SUBSCRIBE/UNSUBSCRIBE are refused like any other method.
    if (method === 'SUBSCRIBE' || method === 'UNSUBSCRIBE') send(res, 405, '', { Allow: doc !== undefined ? 'GET, HEAD' : 'POST' })
    else send(res, 501, '')
  }

  // connectionsCheckingInterval: how often the header/request timeouts are enforced (default 30 s).
  const server: Server = createServer({ maxHeaderSize: 8192, connectionsCheckingInterval: 1000 }, (req, res) => {
    req.on('error', () => {})
    res.on('error', () => {})
    handle(req, res).catch((err: unknown) => {
      o.log.error({ err }, 'upnp http: internal error')
      send(res, 500, '')
    })
  })
  server.headersTimeout = o.headersTimeoutMs ?? 5000
  server.requestTimeout = o.requestTimeoutMs ?? 10_000
  server.keepAliveTimeout = 5000
  server.maxConnections = MAX_CONNECTIONS
  server.on('clientError', (_err, socket) => socket.destroy())
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: o.host, port: o.port, exclusive: true }, () => {
      server.off('error', reject)
      resolve()
    })
  })
  server.on('error', (err) => o.log.error({ err }, 'upnp http: server error'))
  const a = server.address()
  const address = typeof a === 'object' && a !== null ? { address: a.address, port: a.port } : { address: o.host, port: o.port }
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections?.()
      }),
  }
}

/** The body as UTF-8 text, or null once it passes `max` bytes (the rest is read and discarded) or the request is aborted. */
function readBody(req: IncomingMessage, max: number): Promise<string | null> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let size = 0
    let done = false
    const finish = (v: string | null): void => {
      if (done) return
      done = true
      resolve(v)
    }
    req.on('data', (c: Buffer) => {
      size += c.byteLength
      if (size > max) finish(null)
      else chunks.push(c)
    })
    req.on('end', () => finish(Buffer.concat(chunks).toString('utf8')))
    req.on('error', () => finish(null))
    req.on('close', () => finish(null))
  })
}
