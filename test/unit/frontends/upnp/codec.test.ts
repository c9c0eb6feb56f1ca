import { XMLValidator } from 'fast-xml-parser'
import { describe, expect, it } from 'vitest'
import { cleanDescription } from '../../../../src/frontends/upnp/backend.js'
import { ACTIONS_OF, rootDescription, SCPD_CIF, SCPD_IP1, SCPD_IP2, SERVICE_IP1, SERVICE_IP2 } from '../../../../src/frontends/upnp/description.js'
import { deviceIds } from '../../../../src/frontends/upnp/index.js'
import { buildReplies, matchTargets, parseMSearch } from '../../../../src/frontends/upnp/ssdp-codec.js'
import { actionFromHeader, buildFault, decodeText, parseSoapRequest, UPNP_ERRORS } from '../../../../src/frontends/upnp/soap.js'

const ids = deviceIds('10.8.0.1')
const bytes = (s: string): Uint8Array => Buffer.from(s, 'latin1')
/** miniupnpc 2.2.4 minissdpc.c MSearchMsgFmt (what upnpc sends, one per search type). */
const MINIUPNPC = (st: string): string => `M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: ${st}\r\nMAN: "ssdp:discover"\r\nMX: 2\r\n\r\n`
/** libtorrent src/frontends/upnp.cpp discover_device_impl: no spaces after the colons, a trailing blank line. */
const LIBTORRENT = 'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST:upnp:rootdevice\r\nMAN:"ssdp:discover"\r\nMX:3\r\n\r\n\r\n'
const REPLY = { location: 'http://10.8.0.1:2869/rootDesc.xml', server: 'Linux/6.1 UPnP/1.1 wgpmp/0.1.0', maxAge: 1800, date: 'Tue, 01 Dec 2026 10:00:00 GMT' }

describe('SSDP codec', () => {
  it('parses the M-SEARCHes of miniupnpc and libtorrent', () => {
    expect(parseMSearch(bytes(MINIUPNPC('urn:schemas-upnp-org:device:InternetGatewayDevice:1')))).toEqual({
      st: 'urn:schemas-upnp-org:device:InternetGatewayDevice:1',
      mx: 2,
    })
    expect(parseMSearch(bytes(LIBTORRENT))).toEqual({ st: 'upnp:rootdevice', mx: 3 })
  })

  it('ignores what is not a search: NOTIFY, replies, no MAN, a wrong MAN, empty, oversized', () => {
    expect(parseMSearch(bytes('NOTIFY * HTTP/1.1\r\nNT: upnp:rootdevice\r\nNTS: ssdp:alive\r\n\r\n'))).toBeNull()
    expect(parseMSearch(bytes('HTTP/1.1 200 OK\r\nST: upnp:rootdevice\r\n\r\n'))).toBeNull()
    expect(parseMSearch(bytes('M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\n\r\n'))).toBeNull()
    expect(parseMSearch(bytes('M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\nMAN: "ssdp:update"\r\n\r\n'))).toBeNull()
    expect(parseMSearch(new Uint8Array(0))).toBeNull()
    expect(parseMSearch(bytes(MINIUPNPC('ssdp:all') + 'X'.repeat(3000)))).toBeNull()
  })

  it('answers each searched type of ours with one reply, ssdp:all with all ten, and nothing else', () => {
    const sts = (st: string) => matchTargets(st, ids).map(([t]) => t)
    expect(sts('urn:schemas-upnp-org:device:InternetGatewayDevice:1')).toEqual(['urn:schemas-upnp-org:device:InternetGatewayDevice:1'])
    expect(sts('upnp:rootdevice')).toEqual(['upnp:rootdevice'])
    expect(sts(SERVICE_IP1)).toEqual([SERVICE_IP1])
    expect(sts(SERVICE_IP2)).toEqual([SERVICE_IP2])
    expect(sts(ids.root)).toEqual([ids.root])
    expect(sts('ssdp:all')).toHaveLength(10)
    expect(sts('urn:schemas-upnp-org:device:InternetGatewayDevice:2')).toEqual([]) // we are IGD:1
    expect(sts('urn:schemas-upnp-org:service:WANPPPConnection:1')).toEqual([])
    expect(sts('urn:schemas-upnp-org:device:MediaServer:1')).toEqual([])
  })

  it("golden: the reply to miniupnpc's IGD:1 search", () => {
    const [r, ...more] = buildReplies(parseMSearch(bytes(MINIUPNPC('urn:schemas-upnp-org:device:InternetGatewayDevice:1')))!, ids, REPLY)
    expect(more).toEqual([])
    expect(r!.toString('latin1')).toBe(
      'HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nDATE: Tue, 01 Dec 2026 10:00:00 GMT\r\nEXT:\r\n' +
        'LOCATION: http://10.8.0.1:2869/rootDesc.xml\r\nSERVER: Linux/6.1 UPnP/1.1 wgpmp/0.1.0\r\n' +
        'ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n' +
        `USN: ${ids.root}::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nBOOTID.UPNP.ORG: 1\r\nCONFIGID.UPNP.ORG: 1\r\n\r\n`,
    )
  })

  it('device UUIDs are stable for one WireGuard address and differ for another', () => {
    expect(deviceIds('10.8.0.1')).toEqual(ids)
    expect(deviceIds('10.9.0.1').root).not.toBe(ids.root)
    expect(ids.root).toMatch(/^uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
  })
})

describe('descriptions', () => {
  const root = rootDescription(ids, '0.1.0')
  it('are well-formed XML', () => {
    for (const doc of [root, SCPD_CIF, SCPD_IP1, SCPD_IP2]) expect(XMLValidator.validate(doc)).toBe(true)
  })
  it('root: IGD:1 > WANDevice:1 (WANCommonInterfaceConfig:1) > WANConnectionDevice:1 (WANIPConnection:1 first, then :2), no eventing URLs', () => {
    const order = [
      'device:InternetGatewayDevice:1',
      'device:WANDevice:1',
      'service:WANCommonInterfaceConfig:1',
      'device:WANConnectionDevice:1',
      'service:WANIPConnection:1',
      'service:WANIPConnection:2',
    ]
    const at = order.map((t) => root.indexOf(`urn:schemas-upnp-org:${t}<`))
    expect(at.every((i) => i > 0)).toBe(true)
    expect([...at].sort((a, b) => a - b)).toEqual(at)
    expect(root).toContain('<controlURL>/ctl/IPConn</controlURL>')
    expect(root.match(/<eventSubURL><\/eventSubURL>/g)).toHaveLength(3)
    expect(root).not.toMatch(/<eventSubURL>[^<]/)
  })
  it('SCPDs list exactly the actions the service answers', () => {
    const actions = (x: string) => [...x.matchAll(/<action><name>([A-Za-z]+)<\/name>/g)].map((m) => m[1])
    expect(actions(SCPD_IP1)).toEqual([...ACTIONS_OF[SERVICE_IP1]!])
    expect(actions(SCPD_IP2)).toEqual(expect.arrayContaining(['AddAnyPortMapping', 'DeletePortMappingRange', 'GetListOfPortMappings', 'AddPortMapping']))
    expect(actions(SCPD_IP1)).not.toContain('AddAnyPortMapping')
    expect(actions(SCPD_CIF)).toEqual([
      'GetCommonLinkProperties',
      'GetTotalBytesSent',
      'GetTotalBytesReceived',
      'GetTotalPacketsSent',
      'GetTotalPacketsReceived',
    ])
  })
})

const envelope = (action: string, inner: string, ns = SERVICE_IP1): string =>
  `<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:${action} xmlns:u="${ns}">${inner}</u:${action}></s:Body></s:Envelope>\r\n`

describe('SOAP parsing', () => {
  it('takes the action from SOAPAction (quoted or not) and the arguments by local name', () => {
    const r = parseSoapRequest(
      envelope('DeletePortMapping', '<NewRemoteHost></NewRemoteHost><NewExternalPort>8080</NewExternalPort><NewProtocol>TCP</NewProtocol>'),
      `"${SERVICE_IP1}#DeletePortMapping"`,
    )
    expect(r).toEqual({
      ok: true,
      value: {
        action: 'DeletePortMapping',
        args: new Map([
          ['NewRemoteHost', ''],
          ['NewExternalPort', '8080'],
          ['NewProtocol', 'TCP'],
        ]),
      },
    })
    expect(actionFromHeader(`${SERVICE_IP1}#GetStatusInfo`)).toEqual({ serviceType: SERVICE_IP1, action: 'GetStatusInfo' })
  })
  it('other prefixes and a default namespace work the same (matching is by local name)', () => {
    const body = `<?xml version="1.0"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><m:GetExternalIPAddress xmlns:m="${SERVICE_IP1}"/></SOAP-ENV:Body></SOAP-ENV:Envelope>`
    expect(parseSoapRequest(body, `"${SERVICE_IP1}#GetExternalIPAddress"`)).toMatchObject({ ok: true, value: { action: 'GetExternalIPAddress' } })
    const dflt = `<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body><GetStatusInfo xmlns="${SERVICE_IP1}"></GetStatusInfo></Body></Envelope>`
    expect(parseSoapRequest(dflt, undefined)).toMatchObject({ ok: true, value: { action: 'GetStatusInfo' } })
  })
  it('decodes the predefined entities and character references, and takes a bare & as text (miniupnpc does not escape)', () => {
    const r = parseSoapRequest(
      envelope('AddPortMapping', '<NewPortMappingDescription>a &amp; b &lt;c&gt; &#233;&#x41; & d</NewPortMappingDescription>'),
      `"${SERVICE_IP1}#AddPortMapping"`,
    )
    expect(r.ok && r.value.args.get('NewPortMappingDescription')).toBe('a & b <c> éA & d')
    expect(decodeText('&foo; &#0; &#xD800;')).toBe('&foo; &#0; &#xD800;')
  })
  it('refuses a DOCTYPE or ENTITY before parsing (no XXE, no billion laughs)', () => {
    const xxe = `<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>${envelope('GetStatusInfo', '&e;')}`
    expect(parseSoapRequest(xxe, `"${SERVICE_IP1}#GetStatusInfo"`)).toMatchObject({ ok: false, error: 402 })
    const lol = `<!doctype lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><lolz>&lol2;</lolz>`
    expect(parseSoapRequest(lol, undefined)).toMatchObject({ ok: false, error: 402 })
  })
  it('refuses: header and body disagreeing (401), a header without #, malformed XML, no Body, two actions, oversize', () => {
    expect(parseSoapRequest(envelope('DeletePortMapping', ''), `"${SERVICE_IP1}#AddPortMapping"`)).toMatchObject({ ok: false, error: 401 })
    expect(parseSoapRequest(envelope('GetStatusInfo', ''), 'GetStatusInfo')).toMatchObject({ ok: false, error: 401 })
    expect(parseSoapRequest('<s:Envelope><s:Body><u:GetStatusInfo></s:Body>', undefined)).toMatchObject({ ok: false, error: 402 })
    expect(parseSoapRequest('<a>b</a>', undefined)).toMatchObject({ ok: false, error: 402 })
    expect(parseSoapRequest('<Envelope><Body><A/><B/></Body></Envelope>', undefined)).toMatchObject({ ok: false, error: 402 })
    expect(
      parseSoapRequest(envelope('AddPortMapping', `<NewPortMappingDescription>${'x'.repeat(20_000)}</NewPortMappingDescription>`), undefined),
    ).toMatchObject({ ok: false, error: 402 })
    // miniupnpc 2.2.4 sends a description with "<" unescaped: not XML, and refused as such
    expect(parseSoapRequest(envelope('AddPortMapping', '<NewPortMappingDescription>a <b></NewPortMappingDescription>'), undefined)).toMatchObject({
      ok: false,
      error: 402,
    })
  })
  it("faults carry the code and the spec's description", () => {
    for (const code of [402, 501, 606, 713, 714, 715, 716, 718, 724, 725, 726, 727, 728, 729] as const) {
      const f = buildFault(code)
      expect(f).toContain(`<errorCode>${code}</errorCode><errorDescription>${UPNP_ERRORS[code]}</errorDescription>`)
      expect(XMLValidator.validate(f)).toBe(true)
    }
    expect(UPNP_ERRORS[718]).toBe('ConflictInMappingEntry')
    expect(UPNP_ERRORS[726]).toBe('RemoteHostOnlySupportsWildcard')
  })
})

describe('cleanDescription', () => {
  it('drops control characters, trims, caps at 64 code points', () => {
    expect(cleanDescription(' Transmission at 10.8.0.2:51413\r\n')).toBe('Transmission at 10.8.0.2:51413')
    expect(cleanDescription('a\u0000b\u001bc\u2028d')).toBe('abcd')
    expect(cleanDescription('é'.repeat(100))).toBe('é'.repeat(64))
    expect(cleanDescription('😀'.repeat(70))).toHaveLength(128) // 64 code points, two UTF-16 units each
  })
})
