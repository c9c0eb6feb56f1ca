/**
 * The IGD device description and the service descriptions (SCPD), as XML text. Pure.
 *
 * Device tree (IGDv1, what Windows, `nat-upnp` and miniupnpd's default build advertise):
 *   InternetGatewayDevice:1
 *     WANDevice:1                 WANCommonInterfaceConfig:1  (/ctl/CmnIfCfg)
 *       WANConnectionDevice:1     WANIPConnection:1           (/ctl/IPConn)
 *                                 WANIPConnection:2           (/ctl/IPConn2)
 * The v2 service sits after the v1 one in the same connection device: clients that take the first
 * WANIPConnection they find (miniupnpc's "first" service, libtorrent, nat-upnp, Syncthing on an
 * IGD:1 root) use v1; a client that looks for WANIPConnection:2 (upnpc -L/-n/-N through -u with
 * that service, @achingbrain/nat-port-mapper's v2 gateway) finds it. miniupnpd instead offers
 * either an IGD:1 or an IGD:2 tree, never both; a v1 root keeps Windows (BITS) and nat-upnp working.
 * No eventing: every eventSubURL is empty (the description schema needs the element) and the
 * HTTP server answers SUBSCRIBE with 405.
 */

export const SERVICE_CIF = 'urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1'
export const SERVICE_IP1 = 'urn:schemas-upnp-org:service:WANIPConnection:1'
export const SERVICE_IP2 = 'urn:schemas-upnp-org:service:WANIPConnection:2'
export const DEVICE_IGD = 'urn:schemas-upnp-org:device:InternetGatewayDevice:1'
export const DEVICE_WAN = 'urn:schemas-upnp-org:device:WANDevice:1'
export const DEVICE_WANCONN = 'urn:schemas-upnp-org:device:WANConnectionDevice:1'

/** HTTP paths the server answers. */
export const PATHS = {
  root: '/rootDesc.xml',
  scpdCif: '/WANCfg.xml',
  scpdIp1: '/WANIPCn.xml',
  scpdIp2: '/WANIPCn2.xml',
  ctlCif: '/ctl/CmnIfCfg',
  ctlIp1: '/ctl/IPConn',
  ctlIp2: '/ctl/IPConn2',
} as const

/** The service a control path serves. */
export const CONTROL: Readonly<Record<string, string>> = {
  [PATHS.ctlCif]: SERVICE_CIF,
  [PATHS.ctlIp1]: SERVICE_IP1,
  [PATHS.ctlIp2]: SERVICE_IP2,
}

/** Escapes text for XML element content and attribute values. */
export const xmlEscape = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : c === '"' ? '&quot;' : '&apos;'))

export interface DeviceIds {
  /** "uuid:..." of the root, WAN and WAN connection devices. */
  readonly root: string
  readonly wan: string
  readonly conn: string
}

const service = (type: string, id: string, scpd: string, ctl: string): string =>
  `<service><serviceType>${type}</serviceType><serviceId>${id}</serviceId><SCPDURL>${scpd}</SCPDURL><controlURL>${ctl}</controlURL><eventSubURL></eventSubURL></service>`

/** rootDesc.xml. `version` shows as modelNumber. */
export function rootDescription(ids: DeviceIds, version: string): string {
  const device = (type: string, name: string, udn: string, inner: string): string =>
    `<device><deviceType>${type}</deviceType><friendlyName>${name}</friendlyName><manufacturer>wgpmp</manufacturer>` +
    `<manufacturerURL>https://github.com/wgpmp</manufacturerURL><modelDescription>wgpmp WireGuard port forwarding</modelDescription>` +
    `<modelName>wgpmp</modelName><modelNumber>${xmlEscape(version)}</modelNumber><modelURL>https://github.com/wgpmp</modelURL>` +
    `<serialNumber>00000000</serialNumber><UDN>${udn}</UDN>${inner}</device>`
  const conn = device(
    DEVICE_WANCONN,
    'WANConnectionDevice',
    ids.conn,
    `<serviceList>${service(SERVICE_IP1, 'urn:upnp-org:serviceId:WANIPConn1', PATHS.scpdIp1, PATHS.ctlIp1)}` +
      `${service(SERVICE_IP2, 'urn:upnp-org:serviceId:WANIPConn2', PATHS.scpdIp2, PATHS.ctlIp2)}</serviceList>`,
  )
  const wan = device(
    DEVICE_WAN,
    'WANDevice',
    ids.wan,
    `<serviceList>${service(SERVICE_CIF, 'urn:upnp-org:serviceId:WANCommonIFC1', PATHS.scpdCif, PATHS.ctlCif)}</serviceList>` +
      `<deviceList>${conn}</deviceList>`,
  )
  const root = device(DEVICE_IGD, 'wgpmp', ids.root, `<deviceList>${wan}</deviceList>`)
  return `<?xml version="1.0"?>\n<root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major><minor>0</minor></specVersion>${root}</root>`
}

type Dir = 'in' | 'out'
/** [name, direction, related state variable] */
type Arg = readonly [string, Dir, string]

const PM_KEY: readonly Arg[] = [
  ['NewRemoteHost', 'in', 'RemoteHost'],
  ['NewExternalPort', 'in', 'ExternalPort'],
  ['NewProtocol', 'in', 'PortMappingProtocol'],
]
const PM_VALUE = (dir: Dir): Arg[] => [
  ['NewInternalPort', dir, 'InternalPort'],
  ['NewInternalClient', dir, 'InternalClient'],
  ['NewEnabled', dir, 'PortMappingEnabled'],
  ['NewPortMappingDescription', dir, 'PortMappingDescription'],
  ['NewLeaseDuration', dir, 'PortMappingLeaseDuration'],
]

/** The actions of WANIPConnection (v1, and the v2 additions). */
export const IP_ACTIONS_V1: Readonly<Record<string, readonly Arg[]>> = {
  SetConnectionType: [['NewConnectionType', 'in', 'ConnectionType']],
  GetConnectionTypeInfo: [
    ['NewConnectionType', 'out', 'ConnectionType'],
    ['NewPossibleConnectionTypes', 'out', 'PossibleConnectionTypes'],
  ],
  RequestConnection: [],
  ForceTermination: [],
  GetStatusInfo: [
    ['NewConnectionStatus', 'out', 'ConnectionStatus'],
    ['NewLastConnectionError', 'out', 'LastConnectionError'],
    ['NewUptime', 'out', 'Uptime'],
  ],
  GetNATRSIPStatus: [
    ['NewRSIPAvailable', 'out', 'RSIPAvailable'],
    ['NewNATEnabled', 'out', 'NATEnabled'],
  ],
  GetGenericPortMappingEntry: [
    ['NewPortMappingIndex', 'in', 'PortMappingNumberOfEntries'],
    ...PM_KEY.map(([n, , v]): Arg => [n, 'out', v]),
    ...PM_VALUE('out'),
  ],
  GetSpecificPortMappingEntry: [...PM_KEY, ...PM_VALUE('out')],
  AddPortMapping: [...PM_KEY, ...PM_VALUE('in')],
  DeletePortMapping: [...PM_KEY],
  GetExternalIPAddress: [['NewExternalIPAddress', 'out', 'ExternalIPAddress']],
}
export const IP_ACTIONS_V2: Readonly<Record<string, readonly Arg[]>> = {
  ...IP_ACTIONS_V1,
  DeletePortMappingRange: [
    ['NewStartPort', 'in', 'ExternalPort'],
    ['NewEndPort', 'in', 'ExternalPort'],
    ['NewProtocol', 'in', 'PortMappingProtocol'],
    ['NewManage', 'in', 'A_ARG_TYPE_Manage'],
  ],
  GetListOfPortMappings: [
    ['NewStartPort', 'in', 'ExternalPort'],
    ['NewEndPort', 'in', 'ExternalPort'],
    ['NewProtocol', 'in', 'PortMappingProtocol'],
    ['NewManage', 'in', 'A_ARG_TYPE_Manage'],
    ['NewNumberOfPorts', 'in', 'PortMappingNumberOfEntries'],
    ['NewPortListing', 'out', 'A_ARG_TYPE_PortListing'],
  ],
  AddAnyPortMapping: [...PM_KEY, ...PM_VALUE('in'), ['NewReservedPort', 'out', 'ExternalPort']],
}
export const CIF_ACTIONS: Readonly<Record<string, readonly Arg[]>> = {
  GetCommonLinkProperties: [
    ['NewWANAccessType', 'out', 'WANAccessType'],
    ['NewLayer1UpstreamMaxBitRate', 'out', 'Layer1UpstreamMaxBitRate'],
    ['NewLayer1DownstreamMaxBitRate', 'out', 'Layer1DownstreamMaxBitRate'],
    ['NewPhysicalLinkStatus', 'out', 'PhysicalLinkStatus'],
  ],
  // Optional in WANCommonInterfaceConfig:1; upnpc -s and Windows ask. wgpmp counts nothing: 0.
  GetTotalBytesSent: [['NewTotalBytesSent', 'out', 'TotalBytesSent']],
  GetTotalBytesReceived: [['NewTotalBytesReceived', 'out', 'TotalBytesReceived']],
  GetTotalPacketsSent: [['NewTotalPacketsSent', 'out', 'TotalPacketsSent']],
  GetTotalPacketsReceived: [['NewTotalPacketsReceived', 'out', 'TotalPacketsReceived']],
}

/** [name, dataType, allowed values] */
type Var = readonly [string, string, (readonly string[])?]
const IP_VARS_V1: readonly Var[] = [
  ['ConnectionType', 'string'],
  ['PossibleConnectionTypes', 'string', ['Unconfigured', 'IP_Routed', 'IP_Bridged']],
  ['ConnectionStatus', 'string', ['Unconfigured', 'Connecting', 'Connected', 'PendingDisconnect', 'Disconnecting', 'Disconnected']],
  ['Uptime', 'ui4'],
  ['LastConnectionError', 'string', ['ERROR_NONE']],
  ['RSIPAvailable', 'boolean'],
  ['NATEnabled', 'boolean'],
  ['ExternalIPAddress', 'string'],
  ['PortMappingNumberOfEntries', 'ui2'],
  ['PortMappingEnabled', 'boolean'],
  ['PortMappingLeaseDuration', 'ui4'],
  ['RemoteHost', 'string'],
  ['ExternalPort', 'ui2'],
  ['InternalPort', 'ui2'],
  ['PortMappingProtocol', 'string', ['TCP', 'UDP']],
  ['InternalClient', 'string'],
  ['PortMappingDescription', 'string'],
]
const IP_VARS_V2: readonly Var[] = [...IP_VARS_V1, ['A_ARG_TYPE_Manage', 'boolean'], ['A_ARG_TYPE_PortListing', 'string']]
const CIF_VARS: readonly Var[] = [
  ['WANAccessType', 'string', ['DSL', 'POTS', 'Cable', 'Ethernet']],
  ['Layer1UpstreamMaxBitRate', 'ui4'],
  ['Layer1DownstreamMaxBitRate', 'ui4'],
  ['PhysicalLinkStatus', 'string', ['Up', 'Down']],
  ['TotalBytesSent', 'ui4'],
  ['TotalBytesReceived', 'ui4'],
  ['TotalPacketsSent', 'ui4'],
  ['TotalPacketsReceived', 'ui4'],
]

function scpd(actions: Readonly<Record<string, readonly Arg[]>>, vars: readonly Var[]): string {
  const acts = Object.entries(actions).map(
    ([name, args]) =>
      `<action><name>${name}</name>${args.length === 0 ? '' : `<argumentList>${args.map(([n, d, v]) => `<argument><name>${n}</name><direction>${d}</direction><relatedStateVariable>${v}</relatedStateVariable></argument>`).join('')}</argumentList>`}</action>`,
  )
  const sv = vars.map(
    ([n, t, allowed]) =>
      `<stateVariable sendEvents="no"><name>${n}</name><dataType>${t}</dataType>${allowed ? `<allowedValueList>${allowed.map((a) => `<allowedValue>${a}</allowedValue>`).join('')}</allowedValueList>` : ''}</stateVariable>`,
  )
  return `<?xml version="1.0"?>\n<scpd xmlns="urn:schemas-upnp-org:service-1-0"><specVersion><major>1</major><minor>0</minor></specVersion><actionList>${acts.join('')}</actionList><serviceStateTable>${sv.join('')}</serviceStateTable></scpd>`
}

export const SCPD_IP1 = scpd(IP_ACTIONS_V1, IP_VARS_V1)
export const SCPD_IP2 = scpd(IP_ACTIONS_V2, IP_VARS_V2)
export const SCPD_CIF = scpd(CIF_ACTIONS, CIF_VARS)

/** The actions each service answers (anything else: 401 Invalid Action). */
export const ACTIONS_OF: Readonly<Record<string, ReadonlySet<string>>> = {
  [SERVICE_CIF]: new Set(Object.keys(CIF_ACTIONS)),
  [SERVICE_IP1]: new Set(Object.keys(IP_ACTIONS_V1)),
  [SERVICE_IP2]: new Set(Object.keys(IP_ACTIONS_V2)),
}
