/**
 * UpnpService: the IGD actions, one SOAP request in, one HTTP status and body out, over an
 * UpnpBackend. Never throws. The caller (http.ts) has already checked that the requester is a
 * client and which service the control URL belongs to.
 *
 * Policy (see README "UPnP"):
 * - Self-scoped (miniupnpd's secure_mode): NewInternalClient must be the requester's own address
 *   (empty means the requester, as miniupnpd allows); another address gets 718 on WANIPConnection:1
 *   and 606 on :2, exactly as miniupnpd with and without IGD_V2. Listing, lookup and deletion see
 *   only the requester's mappings: another client's mapping is "no such entry" (714, 713, 730),
 *   never 606, so a client cannot even learn which ports others hold.
 * - NewRemoteHost must be empty or "*" (726 RemoteHostOnlySupportsWildcard).
 * - NewLeaseDuration 0 is a "permanent" lease: the backend stores its cap and the mapping lives
 *   while the peer is configured and connected; the client re-adding renews it.
 * - NewEnabled is accepted and ignored (a disabled mapping is not kept), as miniupnpd does.
 * - The IGDv2 actions (AddAnyPortMapping, DeletePortMappingRange, GetListOfPortMappings) are also
 *   answered on the WANIPConnection:1 control URL, as miniupnpd answers any action on any service:
 *   upnpc -L/-n/-N send them to the first WANIPConnection it found, which is the v1 one.
 */
import type { Logger } from '../../log.js'
import { cleanDescription, type UpnpBackend, type UpnpMapping, type UpnpProtocol, type UpnpRefusal } from './backend.js'
import { SERVICE_CIF, SERVICE_IP2 } from './description.js'
import { buildCdataResponse, buildFault, buildResponse, type SoapRequest, type UpnpErrorCode } from './soap.js'

export interface ControlReply {
  readonly status: 200 | 500
  readonly body: string
  /** For logs and metrics: the action and the UPnP error code (0 = success). */
  readonly action: string
  readonly error: number
}

export interface UpnpServiceOptions {
  readonly backend: UpnpBackend
  readonly log: Logger
  /** Seconds since the daemon started (GetStatusInfo NewUptime). */
  readonly uptimeSeconds: () => number
}

/** GetListOfPortMappings with NewNumberOfPorts 0 returns at most this many (miniupnpd's default). */
const LIST_DEFAULT = 1000

class Fault extends Error {
  constructor(
    readonly code: UpnpErrorCode,
    readonly why: string,
  ) {
    super(why)
  }
}
const fault = (code: UpnpErrorCode, why: string): never => {
  throw new Fault(code, why)
}

const port = (args: ReadonlyMap<string, string>, name: string, allowZero = false): number => {
  const v = args.get(name)
  if (v === undefined || !/^[0-9]{1,5}$/.test(v)) return fault(402, `${name} is not a port`)
  const n = Number(v)
  if (n > 65535 || (n === 0 && !allowZero)) return fault(402, `${name} is out of range`)
  return n
}
const protocol = (args: ReadonlyMap<string, string>): UpnpProtocol => {
  const v = args.get('NewProtocol')?.toUpperCase()
  return v === 'TCP' ? 'tcp' : v === 'UDP' ? 'udp' : fault(402, 'NewProtocol is not TCP or UDP')
}
const remoteHostWildcard = (args: ReadonlyMap<string, string>): void => {
  const v = args.get('NewRemoteHost') ?? ''
  if (v !== '' && v !== '*') fault(726, 'NewRemoteHost must be empty')
}
const lease = (args: ReadonlyMap<string, string>): number => {
  const v = args.get('NewLeaseDuration') ?? ''
  if (v === '') return 0
  if (!/^[0-9]{1,10}$/.test(v) || Number(v) > 0xffffffff) return fault(402, 'NewLeaseDuration is not a ui4')
  return Number(v)
}
const upper = (p: UpnpProtocol): string => p.toUpperCase()

export class UpnpService {
  constructor(private readonly o: UpnpServiceOptions) {}

  /** Runs `req` on `serviceType` for `client` (a verified tunnel address). */
  async control(serviceType: string, client: string, req: SoapRequest): Promise<ControlReply> {
    const v2 = serviceType === SERVICE_IP2
    const ok = (out: ReadonlyArray<readonly [string, string | number]> = []): ControlReply => ({
      status: 200,
      body: buildResponse(serviceType, req.action, out),
      action: req.action,
      error: 0,
    })
    try {
      if (serviceType === SERVICE_CIF) {
        const counter = /^GetTotal(BytesSent|BytesReceived|PacketsSent|PacketsReceived)$/.exec(req.action)
        if (counter) return ok([[`NewTotal${counter[1]!}`, 0]])
        if (req.action !== 'GetCommonLinkProperties') fault(401, 'no such action on WANCommonInterfaceConfig')
        return ok([
          ['NewWANAccessType', 'Ethernet'],
          ['NewLayer1UpstreamMaxBitRate', 1_000_000_000],
          ['NewLayer1DownstreamMaxBitRate', 1_000_000_000],
          ['NewPhysicalLinkStatus', 'Up'],
        ])
      }
      const a = req.args
      const b = this.o.backend
      switch (req.action) {
        case 'GetStatusInfo':
          return ok([
            ['NewConnectionStatus', 'Connected'],
            ['NewLastConnectionError', 'ERROR_NONE'],
            ['NewUptime', Math.max(0, Math.floor(this.o.uptimeSeconds()))],
          ])
        case 'GetConnectionTypeInfo':
          return ok([
            ['NewConnectionType', 'IP_Routed'],
            ['NewPossibleConnectionTypes', 'IP_Routed'],
          ])
        case 'SetConnectionType':
        case 'RequestConnection':
          return ok() // always connected, always IP_Routed: nothing to change
        case 'ForceTermination':
          return fault(606, 'a client cannot take the gateway down')
        case 'GetNATRSIPStatus':
          return ok([
            ['NewRSIPAvailable', 0],
            ['NewNATEnabled', 1],
          ])
        case 'GetExternalIPAddress':
          return ok([['NewExternalIPAddress', b.publicAddress()]])
        case 'AddPortMapping':
        case 'AddAnyPortMapping': {
          const any = req.action === 'AddAnyPortMapping'
          remoteHostWildcard(a)
          const extText = a.get('NewExternalPort')
          const ext =
            !any && (extText === '*' || extText === '0')
              ? fault(716, 'AddPortMapping needs an external port')
              : extText === '*'
                ? 0
                : port(a, 'NewExternalPort', any)
          const internalPort = port(a, 'NewInternalPort')
          const proto = protocol(a)
          const target = (a.get('NewInternalClient') ?? '').trim()
          if (target !== '' && target !== client) fault(v2 || any ? 606 : 718, 'NewInternalClient is not the requester')
          const r = await b.add({
            client,
            protocol: proto,
            externalPort: ext,
            internalPort,
            leaseSeconds: lease(a),
            description: cleanDescription(a.get('NewPortMappingDescription') ?? ''),
            exact: !any,
          })
          if (!r.ok) return fault(refusalCode(r.refusal, v2), `refused: ${r.refusal}`)
          this.o.log.info(
            { client, protocol: proto, externalPort: r.externalPort, internalPort, leaseSeconds: r.leaseSeconds, action: req.action },
            'upnp: mapping added',
          )
          return ok(any ? [['NewReservedPort', r.externalPort]] : [])
        }
        case 'DeletePortMapping': {
          remoteHostWildcard(a)
          const ext = port(a, 'NewExternalPort')
          const proto = protocol(a)
          const r = await b.remove(client, proto, ext)
          if (r === 'not-found') return fault(714, 'no such mapping of this client')
          if (r === 'kernel-refused') return fault(501, 'delete refused by the kernel')
          this.o.log.info({ client, protocol: proto, externalPort: ext }, 'upnp: mapping deleted')
          return ok()
        }
        case 'GetSpecificPortMappingEntry': {
          remoteHostWildcard(a)
          const m = b.get(client, protocol(a), port(a, 'NewExternalPort')) ?? fault(714, 'no such mapping of this client')
          return ok([
            ['NewInternalPort', m.internalPort],
            ['NewInternalClient', m.internalClient],
            ['NewEnabled', 1],
            ['NewPortMappingDescription', m.description],
            ['NewLeaseDuration', m.secondsLeft],
          ])
        }
        case 'GetGenericPortMappingEntry': {
          const v = a.get('NewPortMappingIndex') ?? ''
          if (!/^[0-9]{1,10}$/.test(v)) fault(402, 'NewPortMappingIndex is not a number')
          const m = b.list(client)[Number(v)] ?? fault(713, "index past the end of this client's mappings")
          return ok([
            ['NewRemoteHost', ''],
            ['NewExternalPort', m.externalPort],
            ['NewProtocol', upper(m.protocol)],
            ['NewInternalPort', m.internalPort],
            ['NewInternalClient', m.internalClient],
            ['NewEnabled', 1],
            ['NewPortMappingDescription', m.description],
            ['NewLeaseDuration', m.secondsLeft],
          ])
        }
        case 'DeletePortMappingRange':
        case 'GetListOfPortMappings': {
          const start = port(a, 'NewStartPort', true)
          const end = port(a, 'NewEndPort', true)
          const proto = protocol(a)
          if (start > end) fault(733, 'NewStartPort > NewEndPort')
          if (req.action === 'DeletePortMappingRange') {
            const r = await b.removeRange(client, proto, start, end)
            if (!r.ok) return fault(501, 'delete refused by the kernel')
            if (r.removed === 0) fault(730, 'no mapping of this client in the range')
            this.o.log.info({ client, protocol: proto, start, end, count: r.removed }, 'upnp: mappings deleted')
            return ok()
          }
          const nText = a.get('NewNumberOfPorts') ?? ''
          if (!/^[0-9]{1,5}$/.test(nText)) fault(402, 'NewNumberOfPorts is not a number')
          const n = Number(nText) === 0 ? LIST_DEFAULT : Math.min(Number(nText), LIST_DEFAULT)
          const found = b
            .list(client)
            .filter((m) => m.protocol === proto && m.externalPort >= start && m.externalPort <= end)
            .slice(0, n)
          if (found.length === 0) fault(730, 'no mapping of this client in the range')
          return { status: 200, body: buildCdataResponse(serviceType, req.action, 'NewPortListing', portListing(found)), action: req.action, error: 0 }
        }
        default:
          return fault(401, 'no such action')
      }
    } catch (err) {
      if (err instanceof Fault) {
        this.o.log.debug({ client, action: req.action, code: err.code, why: err.why }, 'upnp: fault')
        return { status: 500, body: buildFault(err.code), action: req.action, error: err.code }
      }
      this.o.log.error({ err, client, action: req.action }, 'upnp: internal error')
      return { status: 500, body: buildFault(501), action: req.action, error: 501 }
    }
  }
}

/** The UPnP error for a refused add: IGDv1 clients know 718 (libtorrent retries another port on it), IGDv2 has finer codes. */
export function refusalCode(r: UpnpRefusal, v2: boolean): UpnpErrorCode {
  switch (r) {
    case 'port-taken':
      return 718
    case 'port-unavailable':
      return v2 ? 606 : 718
    case 'no-ports':
      return 728
    case 'client-limit':
      return v2 ? 728 : 501
    case 'not-a-client':
      return 606
    case 'kernel-refused':
      return 501
  }
}

/** The PortMappingList document of GetListOfPortMappings (WANIPConnection:2 §2.3.22, miniupnpd's layout). */
export function portListing(ms: readonly UpnpMapping[]): string {
  const esc = (s: string): string => s.replace(/[&<>]/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : '&gt;'))
  const entries = ms.map(
    (m) =>
      '<p:PortMappingEntry><p:NewRemoteHost></p:NewRemoteHost>' +
      `<p:NewExternalPort>${m.externalPort}</p:NewExternalPort><p:NewProtocol>${upper(m.protocol)}</p:NewProtocol>` +
      `<p:NewInternalPort>${m.internalPort}</p:NewInternalPort><p:NewInternalClient>${m.internalClient}</p:NewInternalClient>` +
      `<p:NewEnabled>1</p:NewEnabled><p:NewDescription>${esc(m.description)}</p:NewDescription><p:NewLeaseTime>${m.secondsLeft}</p:NewLeaseTime></p:PortMappingEntry>`,
  )
  return (
    '<p:PortMappingList xmlns:p="urn:schemas-upnp-org:gw:WANIPConnection" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ' +
    'xsi:schemaLocation="urn:schemas-upnp-org:gw:WANIPConnection http://www.upnp.org/schemas/gw/WANIPConnection-v2.xsd">' +
    `${entries.join('')}</p:PortMappingList>`
  )
}
