/**
 * startUpnp: the UPnP IGD front-end (SSDP + HTTP/SOAP) on the WireGuard address, over an
 * UpnpBackend. The daemon wires it with one call; the front-end knows nothing else of it.
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { release, type } from 'node:os'
import type { Logger } from '../../log.js'
import type { UpnpBackend } from './backend.js'
import { PATHS, rootDescription, type DeviceIds } from './description.js'
import { startUpnpHttp } from './http.js'
import { UpnpService, type ControlReply } from './service.js'
import { startSsdp } from './ssdp.js'

export type { UpnpBackend } from './backend.js'
export { ForwarderBackend } from './forwarder-backend.js'

export interface UpnpOptions {
  readonly backend: UpnpBackend
  /** The server's WireGuard IPv4 address (no prefix). */
  readonly wgAddress: string
  readonly httpPort: number
  /** 1900 unless a test says otherwise. */
  readonly ssdpPort?: number
  readonly version: string
  readonly uptimeSeconds: () => number
  /** Per-source admission for SSDP searches (a token bucket). */
  readonly allowSearch: (source: string) => boolean
  readonly log: Logger
  readonly onControl?: (reply: ControlReply) => void
  readonly onSearch?: (outcome: string) => void
}

export interface Upnp {
  readonly http: { address: string; port: number }
  readonly ssdp: { address: string; port: number }
  /** http://<wg address>:<port>/rootDesc.xml */
  readonly location: string
  close(): Promise<void>
}

/** wgpmp's version from package.json (found from src/ and from dist/src/), for SERVER and modelNumber. */
export function packageVersion(): string {
  for (const rel of ['../../package.json', '../../../package.json']) {
    try {
      const v = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string }
      if (v.name === 'wgpmp' && typeof v.version === 'string') return v.version
    } catch {
      // not there: try the next
    }
  }
  return '0'
}

/** Stable device UUIDs (the same across restarts for the same WireGuard address), UUID-formatted. */
export function deviceIds(seed: string): DeviceIds {
  const uuid = (part: string): string => {
    const h = createHash('sha1').update(`wgpmp-upnp|${seed}|${part}`).digest('hex')
    return `uuid:${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${((parseInt(h.slice(16, 18), 16) & 0x3f) | 0x80).toString(16)}${h.slice(18, 20)}-${h.slice(20, 32)}`
  }
  return { root: uuid('root'), wan: uuid('wan'), conn: uuid('conn') }
}

export async function startUpnp(o: UpnpOptions): Promise<Upnp> {
  const ids = deviceIds(o.wgAddress)
  const server = `${type()}/${release()} UPnP/1.1 wgpmp/${o.version}`
  const isClient = (a: string): Promise<boolean> => o.backend.isClient(a)
  const service = new UpnpService({ backend: o.backend, log: o.log, uptimeSeconds: o.uptimeSeconds })
  const http = await startUpnpHttp({
    host: o.wgAddress,
    port: o.httpPort,
    rootDescription: rootDescription(ids, o.version),
    service,
    isClient,
    server,
    log: o.log,
    ...(o.onControl ? { onControl: o.onControl } : {}),
  })
  const location = `http://${o.wgAddress}:${http.address.port}${PATHS.root}`
  let ssdp
  try {
    ssdp = await startSsdp({
      wgAddress: o.wgAddress,
      ids,
      isClient,
      allow: o.allowSearch,
      log: o.log,
      reply: { location, server, maxAge: 1800 },
      ...(o.ssdpPort === undefined ? {} : { port: o.ssdpPort }),
      ...(o.onSearch ? { count: o.onSearch } : {}),
    })
  } catch (err) {
    await http.close()
    throw err
  }
  return {
    http: http.address,
    ssdp: ssdp.address,
    location,
    async close() {
      await ssdp.close()
      await http.close()
    },
  }
}
