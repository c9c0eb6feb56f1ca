/**
 * SSDP (UDA 1.1 §1.3): parsing an M-SEARCH and building the unicast replies. Pure, never throws.
 *
 * An M-SEARCH is answered for ssdp:all, upnp:rootdevice, the device UUIDs and the device and
 * service types this gateway has (InternetGatewayDevice:1, WANDevice:1, WANConnectionDevice:1,
 * WANCommonInterfaceConfig:1, WANIPConnection:1 and :2). A search for a type of a version below
 * ours is answered too, with our type (UDA 1.1 §1.3.2: devices are backward compatible), so
 * InternetGatewayDevice:1 searches and :2 searches differ: an IGD:2 search gets nothing.
 */
import { DEVICE_IGD, DEVICE_WAN, DEVICE_WANCONN, SERVICE_CIF, SERVICE_IP1, SERVICE_IP2, type DeviceIds } from './description.js'

export const SSDP_GROUP = '239.255.255.250'
export const SSDP_PORT = 1900
/** An M-SEARCH longer than this is not one (real ones are 100-200 bytes). */
export const MSEARCH_MAX_BYTES = 2048

export interface MSearch {
  /** The search target, as sent. */
  readonly st: string
  /** MX in seconds (0 if absent: unicast searches need none), capped at 5 (UDA 1.1). */
  readonly mx: number
}

/** Parses an M-SEARCH request; null for anything else (a NOTIFY, a reply, garbage). */
export function parseMSearch(buf: Uint8Array): MSearch | null {
  if (buf.byteLength === 0 || buf.byteLength > MSEARCH_MAX_BYTES) return null
  const text = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('latin1')
  const lines = text.split(/\r?\n/)
  if (!/^M-SEARCH \* HTTP\/1\.[01]$/i.test(lines[0]!.trim())) return null
  let st: string | null = null
  let man: string | null = null
  let mx = 0
  for (const line of lines.slice(1, 40)) {
    const colon = line.indexOf(':')
    if (colon <= 0) continue
    const name = line.slice(0, colon).trim().toUpperCase()
    const value = line.slice(colon + 1).trim()
    if (name === 'ST') st = value
    else if (name === 'MAN') man = value
    else if (name === 'MX') {
      const n = Number.parseInt(value, 10)
      mx = Number.isFinite(n) && n > 0 ? Math.min(n, 5) : 0
    }
  }
  // MAN must be "ssdp:discover" (quoted per UDA; some clients omit the quotes).
  if (st === null || st === '' || man === null || man.replace(/"/g, '').toLowerCase() !== 'ssdp:discover') return null
  return { st, mx }
}

/** [ST to send, USN] pairs this gateway answers for a search target. */
export function matchTargets(st: string, ids: DeviceIds): Array<readonly [string, string]> {
  const all: Array<readonly [string, string]> = [
    ['upnp:rootdevice', `${ids.root}::upnp:rootdevice`],
    [ids.root, ids.root],
    [DEVICE_IGD, `${ids.root}::${DEVICE_IGD}`],
    [ids.wan, ids.wan],
    [DEVICE_WAN, `${ids.wan}::${DEVICE_WAN}`],
    [SERVICE_CIF, `${ids.wan}::${SERVICE_CIF}`],
    [ids.conn, ids.conn],
    [DEVICE_WANCONN, `${ids.conn}::${DEVICE_WANCONN}`],
    [SERVICE_IP1, `${ids.conn}::${SERVICE_IP1}`],
    [SERVICE_IP2, `${ids.conn}::${SERVICE_IP2}`],
  ]
  if (st === 'ssdp:all') return all
  const exact = all.filter(([t]) => t === st)
  if (exact.length > 0 || !st.startsWith('urn:')) return exact
  // A lower version of one of our types: answered with the searched type.
  const m = /^(urn:schemas-upnp-org:(?:device|service):[A-Za-z0-9_-]+):(\d{1,3})$/.exec(st)
  if (!m) return []
  const [, base, v] = m
  const ours = all.find(([t]) => t.startsWith(`${base!}:`) && Number(t.slice(base!.length + 1)) >= Number(v))
  return ours ? [[st, ours[1].replace(/::.*$/, `::${st}`)]] : []
}

export interface ReplyOptions {
  /** http://<wg address>:<port>/rootDesc.xml */
  readonly location: string
  /** SERVER header product tokens, e.g. "Linux/6.1 UPnP/1.1 wgpmp/0.1.0". */
  readonly server: string
  /** CACHE-CONTROL max-age in seconds. */
  readonly maxAge: number
  /** Date header text (injected for tests). */
  readonly date: string
}

/** The replies to an M-SEARCH (one per matching target, UDA 1.1 §1.3.3); [] for no match. */
export function buildReplies(search: MSearch, ids: DeviceIds, o: ReplyOptions): Buffer[] {
  return matchTargets(search.st, ids).map(([st, usn]) =>
    Buffer.from(
      'HTTP/1.1 200 OK\r\n' +
        `CACHE-CONTROL: max-age=${o.maxAge}\r\n` +
        `DATE: ${o.date}\r\n` +
        'EXT:\r\n' +
        `LOCATION: ${o.location}\r\n` +
        `SERVER: ${o.server}\r\n` +
        `ST: ${st}\r\n` +
        `USN: ${usn}\r\n` +
        'BOOTID.UPNP.ORG: 1\r\n' +
        'CONFIGID.UPNP.ORG: 1\r\n' +
        '\r\n',
      'latin1',
    ),
  )
}
