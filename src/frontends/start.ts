/**
 * Starts every protocol front-end on the forwarder: NAT-PMP and PCP on UDP 5351 of the WireGuard
 * addresses, and UPnP IGD (SSDP + HTTP/SOAP) on the IPv4 one. Each registers its close.
 */
import type { Clock } from '../core/clock.js'
import { WgpmpError } from '../core/errors.js'
import { isV6 } from '../core/forward.js'
import { isUniqueLocal } from '../core/ip.js'
import type { Components } from '../core/lifecycle.js'
import type { Forwarder } from '../forwarder/forwarder.js'
import type { Logger } from '../log.js'
import { RateLimiter } from '../mappings/ratelimit.js'
import { NATPMP_PORT } from '../protocol/constants.js'
import { startUdpServer, type UdpServer } from '../server/udp.js'
import type { FrontendContext } from './context.js'
import { pmpDispatch } from './dispatch.js'
import { NatPmpService } from './natpmp/service.js'
import { PcpService } from './pcp/service.js'
import { ACTIONS_OF } from './upnp/description.js'
import { ForwarderBackend, packageVersion, startUpnp } from './upnp/index.js'

const KNOWN_ACTIONS: ReadonlySet<string> = new Set(Object.values(ACTIONS_OF).flatMap((s) => [...s]))

export interface FrontendsOptions {
  forwarder: Forwarder
  clock: Clock
  /** Clock ms the epoch counts from. */
  epochStart: number
  publicV4: string
  publicV6: string | null
  wg: { interface: string; v4: string; v6: string | null; v4Cidr: string; v6Cidr: string | undefined }
  pcp: boolean
  rate: { perSecond: number; burst: number }
  upnp: { enabled: boolean; httpPort: number; leaseCapSeconds: number }
  /** Test overrides: where to listen (UPnP stays off with `listen` given unless `upnpListen` is too). */
  listen?: { host: string; port: number } | undefined
  listenV6?: { host: string; port: number } | undefined
  upnpListen?: { httpPort: number; ssdpPort: number } | undefined
  count: {
    natpmp: (op: number, r: number) => void
    pcp: (op: number, r: number) => void
    drop: (why: 'rate-limit') => void
    /** One UPnP control request: the action (a known one, 'invalid' for an unparsable request, else 'other') and its UPnP error (0 = success). */
    upnp?: (action: string, error: number) => void
    ssdp?: (outcome: string) => void
  }
  /** Every request that passed the rate limit (the page's "last request"). */
  seen: (from: string) => void
  /** Before each request, without waiting (the host's listening ports). */
  before: () => void
  log: Logger
  components: Components
}

/** Resolves with the sockets and UPnP's description URL (null when UPnP is off or could not start). */
export async function startFrontends(o: FrontendsOptions): Promise<{ udp: UdpServer; udp6: UdpServer | null; upnpLocation: string | null }> {
  const { clock, log } = o
  const frontend = (component: string, count: (op: number, r: number) => void): FrontendContext => ({
    forwarder: o.forwarder,
    count,
    log: log.child({ component }),
    epochSeconds: () => Math.floor((clock.now() - o.epochStart) / 1000),
    publicAddress: (client) => (!isV6(client) ? o.publicV4 : isUniqueLocal(client) ? o.publicV6 : client),
  })
  const limiter = new RateLimiter({ clock, ratePerSecond: o.rate.perSecond, burst: o.rate.burst })
  const handle = pmpDispatch({
    natpmp: new NatPmpService(frontend('natpmp', o.count.natpmp)),
    pcp: o.pcp ? new PcpService(frontend('pcp', o.count.pcp)) : null,
    allow: (src) => limiter.allow(src),
    dropped: o.count.drop,
    seen: o.seen,
    before: o.before,
  })
  const udp = await listenUdp(o.listen ?? { host: o.wg.v4, port: NATPMP_PORT }, 'udp4', handle, log, `is ${o.wg.interface} up with ${o.wg.v4Cidr}?`)
  o.components.add('udp', () => udp.close())
  log.info({ address: udp.address.address, port: udp.address.port, wgInterface: o.wg.interface }, 'NAT-PMP listening')
  let udp6: UdpServer | null = null
  if (o.wg.v6 !== null) {
    const u6 = await listenUdp(o.listenV6 ?? { host: o.wg.v6, port: NATPMP_PORT }, 'udp6', handle, log, `is ${o.wg.interface} up with ${o.wg.v6Cidr}?`)
    udp6 = u6
    o.components.add('udp6', () => u6.close())
    log.info({ address: u6.address.address, port: u6.address.port }, 'PCP listening on IPv6')
  }

  // UPnP IGD: SSDP + HTTP/SOAP on the WireGuard address, on the same forwarder.
  let upnpLocation: string | null = null
  if (o.upnp.enabled && (o.listen === undefined || o.upnpListen !== undefined)) {
    const searches = new RateLimiter({ clock, ratePerSecond: 5, burst: 10 })
    try {
      const upnp = await startUpnp({
        backend: new ForwarderBackend({ forwarder: o.forwarder, publicAddress: () => o.publicV4, leaseCapSeconds: o.upnp.leaseCapSeconds }),
        wgAddress: o.listen?.host ?? o.wg.v4,
        httpPort: o.upnpListen?.httpPort ?? o.upnp.httpPort,
        ssdpPort: o.upnpListen?.ssdpPort ?? 1900,
        version: packageVersion(),
        uptimeSeconds: () => (clock.now() - o.epochStart) / 1000,
        allowSearch: (a) => searches.allow(a),
        log: log.child({ component: 'upnp' }),
        // The action name is the client's text: only known names become a metric label.
        ...(o.count.upnp
          ? {
              onControl: (r: { action: string; error: number }) =>
                o.count.upnp?.(KNOWN_ACTIONS.has(r.action) || r.action === 'invalid' ? r.action : 'other', r.error),
            }
          : {}),
        ...(o.count.ssdp ? { onSearch: o.count.ssdp } : {}),
      })
      o.components.add('upnp', () => upnp.close())
      upnpLocation = upnp.location
      log.info({ location: upnp.location, ssdp: upnp.ssdp.port }, 'UPnP listening')
    } catch (err) {
      log.error({ err, port: o.upnp.httpPort }, 'cannot start UPnP; NAT-PMP and PCP go on without it')
    }
  }
  return { udp, udp6, upnpLocation }
}

async function listenUdp(
  at: { host: string; port: number },
  type: 'udp4' | 'udp6',
  handle: Parameters<typeof startUdpServer>[2],
  log: Logger,
  hint: string,
): Promise<UdpServer> {
  try {
    return await startUdpServer(at.host, at.port, handle, log.child({ component: type === 'udp4' ? 'udp' : 'udp6' }), type)
  } catch (err) {
    const where = type === 'udp6' ? `[${at.host}]:${at.port}` : `${at.host}:${at.port}`
    throw new WgpmpError('WGPMP_ADDRESS_UNKNOWN', `cannot listen on ${where} (${(err as Error).message}); ${hint}`, { cause: err })
  }
}
