import { readdirSync, readFileSync } from 'node:fs'
import { connect } from 'node:net'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { rootDescription, SERVICE_CIF, SERVICE_IP1, SERVICE_IP2 } from '../../../../src/frontends/upnp/description.js'
import { startUpnpHttp, type UpnpHttpServer } from '../../../../src/frontends/upnp/http.js'
import { deviceIds } from '../../../../src/frontends/upnp/index.js'
import { UpnpService } from '../../../../src/frontends/upnp/service.js'
import { parseSoapRequest } from '../../../../src/frontends/upnp/soap.js'
import { FakeBackend, type FakeBackendOptions } from './fake-backend.js'

const log = pino({ level: 'silent' })
const A = '10.8.0.2'
const B = '10.8.0.3'
const FIXTURES = new URL('../../../fixtures/upnp/miniupnpc-2.2.4/', import.meta.url)

function setup(o: Partial<FakeBackendOptions> = {}) {
  const backend = new FakeBackend({ clients: [A, B], ...o })
  const service = new UpnpService({ backend, log, uptimeSeconds: () => 42 })
  const call = async (client: string, action: string, args: Record<string, string | number> = {}, serviceType = SERVICE_IP1) => {
    const r = await service.control(serviceType, client, { action, args: new Map(Object.entries(args).map(([k, v]) => [k, String(v)])) })
    const out: Record<string, string> = Object.fromEntries([...r.body.matchAll(/<(New[A-Za-z]+)>([^<]*)<\/\1>/g)].map((m): [string, string] => [m[1]!, m[2]!]))
    return { status: r.status, error: r.error, out, body: r.body }
  }
  return { backend, call }
}
/** libtorrent's AddPortMapping arguments (src/frontends/upnp.cpp create_port_mapping). */
const ltAdd = (client: string, ext: number, o: Record<string, string | number> = {}) => ({
  NewRemoteHost: '',
  NewExternalPort: ext,
  NewProtocol: 'TCP',
  NewInternalPort: 6881,
  NewInternalClient: client,
  NewEnabled: 1,
  NewPortMappingDescription: `libtorrent/2.0.8 at ${client}:6881`,
  NewLeaseDuration: 3600,
  ...o,
})

describe('golden: miniupnpc 2.2.4 (upnpc) exchanges replayed byte for byte', () => {
  let server: UpnpHttpServer | null = null
  afterEach(async () => {
    await server?.close()
    server = null
  })
  it('every captured request gets the captured response (status line and body)', async () => {
    // test/fixtures/upnp/capture.ts recorded these with 127.0.0.1 as the one client.
    const backend = new FakeBackend({ clients: ['127.0.0.1'], publicAddress: '203.0.113.7' })
    server = await startUpnpHttp({
      host: '127.0.0.1',
      port: 0,
      rootDescription: rootDescription(deviceIds('10.8.0.1'), '0.1.0'),
      service: new UpnpService({ backend, log, uptimeSeconds: () => 42 }),
      isClient: async (a) => backend.isClient(a),
      server: 'Linux/6.1 UPnP/1.1 wgpmp/0.1.0',
      log,
    })
    const names = readdirSync(FIXTURES)
      .filter((f) => f.endsWith('.request.txt'))
      .sort()
    expect(names.length).toBeGreaterThanOrEqual(19)
    for (const name of names) {
      const req = readFileSync(new URL(name, FIXTURES), 'utf8')
      const want = readFileSync(new URL(name.replace('.request.', '.response.'), FIXTURES), 'utf8')
      const got = await rawExchange(server.address.port, req)
      const part = (s: string) => ({ status: s.split('\r\n')[0], body: s.slice(s.indexOf('\r\n\r\n') + 4) })
      expect(part(got.replace(/^Date: .*\r\n/im, '')), name).toEqual(part(want))
    }
    expect(backend.table.size).toBe(1) // UDP 16881 left; TCP 18080 deleted
  })
})

function rawExchange(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    s.on('data', (d: Buffer) => chunks.push(d))
    s.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    s.on('error', reject)
    s.write(text)
  })
}

describe('IGD actions', () => {
  it('status, connection type, NAT/RSIP, link properties, external address', async () => {
    const { call } = setup()
    expect((await call(A, 'GetStatusInfo')).out).toEqual({ NewConnectionStatus: 'Connected', NewLastConnectionError: 'ERROR_NONE', NewUptime: '42' })
    expect((await call(A, 'GetConnectionTypeInfo')).out).toEqual({ NewConnectionType: 'IP_Routed', NewPossibleConnectionTypes: 'IP_Routed' })
    expect((await call(A, 'GetNATRSIPStatus')).out).toEqual({ NewRSIPAvailable: '0', NewNATEnabled: '1' })
    expect((await call(A, 'GetExternalIPAddress')).out).toEqual({ NewExternalIPAddress: '203.0.113.7' })
    expect((await call(A, 'GetCommonLinkProperties', {}, SERVICE_CIF)).out).toMatchObject({ NewWANAccessType: 'Ethernet', NewPhysicalLinkStatus: 'Up' })
    expect((await call(A, 'GetTotalBytesSent', {}, SERVICE_CIF)).out).toEqual({ NewTotalBytesSent: '0' })
    expect((await call(A, 'GetStatusInfo', {}, SERVICE_CIF)).error).toBe(401)
    expect((await call(A, 'Frobnicate')).error).toBe(401)
    expect((await call(A, 'ForceTermination')).error).toBe(606)
  })

  it("libtorrent's AddPortMapping maps, a retry renews, the kernel sees one add, the lease carries origin upnp and the description", async () => {
    const { call, backend } = setup()
    expect((await call(A, 'AddPortMapping', ltAdd(A, 6881))).status).toBe(200)
    expect((await call(A, 'AddPortMapping', ltAdd(A, 6881))).status).toBe(200)
    expect(backend.commits).toEqual([[{ op: 'add', forward: { protocol: 'tcp', externalPort: 6881, internalAddress: A, internalPort: 6881 } }]])
    const l = backend.table.get(A, 'tcp', 6881)!
    expect(l).toMatchObject({ origin: 'upnp', description: `libtorrent/2.0.8 at ${A}:6881`, lifetimeSeconds: 3600 })
    expect((await call(A, 'GetSpecificPortMappingEntry', { NewRemoteHost: '', NewExternalPort: 6881, NewProtocol: 'TCP' })).out).toEqual({
      NewInternalPort: '6881',
      NewInternalClient: A,
      NewEnabled: '1',
      NewPortMappingDescription: `libtorrent/2.0.8 at ${A}:6881`,
      NewLeaseDuration: '3600',
    })
  })

  it("self-scoped: another client's address is 718 on v1 and 606 on v2 (miniupnpd secure_mode), empty means the requester", async () => {
    const { call, backend } = setup()
    expect((await call(A, 'AddPortMapping', ltAdd(B, 7000))).error).toBe(718)
    expect((await call(A, 'AddPortMapping', ltAdd(B, 7000), SERVICE_IP2)).error).toBe(606)
    expect((await call(A, 'AddAnyPortMapping', ltAdd(B, 7000), SERVICE_IP2)).error).toBe(606)
    expect(backend.table.size).toBe(0)
    expect((await call(A, 'AddPortMapping', ltAdd('', 7000))).status).toBe(200)
    expect(backend.table.get(A, 'tcp', 6881)?.externalPort).toBe(7000)
  })

  it("a client never takes, sees or deletes another client's port: 718 on add, 714 on lookup and delete, 713 past its own list", async () => {
    const { call } = setup()
    expect((await call(A, 'AddPortMapping', ltAdd(A, 7000))).status).toBe(200)
    expect((await call(B, 'AddPortMapping', ltAdd(B, 7000))).error).toBe(718)
    expect((await call(B, 'AddPortMapping', ltAdd(B, 7000, { NewProtocol: 'UDP' }))).error).toBe(718) // the companion port too
    expect((await call(B, 'GetSpecificPortMappingEntry', { NewExternalPort: 7000, NewProtocol: 'TCP' })).error).toBe(714)
    expect((await call(B, 'DeletePortMapping', { NewExternalPort: 7000, NewProtocol: 'TCP' })).error).toBe(714)
    expect((await call(B, 'GetGenericPortMappingEntry', { NewPortMappingIndex: 0 })).error).toBe(713)
    expect((await call(A, 'GetGenericPortMappingEntry', { NewPortMappingIndex: 0 })).out.NewExternalPort).toBe('7000')
    expect((await call(A, 'GetGenericPortMappingEntry', { NewPortMappingIndex: 1 })).error).toBe(713)
    // AddAnyPortMapping picks another port for B
    const any = await call(B, 'AddAnyPortMapping', ltAdd(B, 7000), SERVICE_IP2)
    expect(any.status).toBe(200)
    expect(Number(any.out.NewReservedPort)).not.toBe(7000)
  })

  it('lease 0 is stored as the permanent cap; long leases are capped there, short ones raised to the minimum', async () => {
    const { call, backend } = setup({ leaseCapSeconds: 86400 })
    await call(A, 'AddPortMapping', ltAdd(A, 7000, { NewLeaseDuration: 0 }))
    expect(backend.table.get(A, 'tcp', 6881)?.lifetimeSeconds).toBe(86400)
    await call(A, 'AddPortMapping', ltAdd(A, 7001, { NewInternalPort: 1, NewLeaseDuration: 999999 }))
    expect(backend.table.get(A, 'tcp', 1)?.lifetimeSeconds).toBe(86400)
    await call(A, 'AddPortMapping', ltAdd(A, 7002, { NewInternalPort: 2, NewLeaseDuration: 5 }))
    expect(backend.table.get(A, 'tcp', 2)?.lifetimeSeconds).toBe(120)
  })

  it('moving: re-adding an internal port on another external port moves it in one batch; re-adding an external port for another internal port replaces it', async () => {
    const { call, backend } = setup()
    await call(A, 'AddPortMapping', ltAdd(A, 7000))
    await call(A, 'AddPortMapping', ltAdd(A, 7001))
    expect(backend.commits.at(-1)).toEqual([
      { op: 'delete', forward: { protocol: 'tcp', externalPort: 7000, internalAddress: A, internalPort: 6881 } },
      { op: 'add', forward: { protocol: 'tcp', externalPort: 7001, internalAddress: A, internalPort: 6881 } },
    ])
    await call(A, 'AddPortMapping', ltAdd(A, 7001, { NewInternalPort: 22 }))
    expect(backend.table.leasesOf(A).map((l) => `${l.externalPort}>${l.targetPort}`)).toEqual(['7001>22'])
  })

  it('a refused kernel commit is 501 and leaves the table as it was (including an undone move)', async () => {
    const { call, backend } = setup()
    await call(A, 'AddPortMapping', ltAdd(A, 7000))
    backend.refuseNext = true
    expect((await call(A, 'AddPortMapping', ltAdd(A, 7001))).error).toBe(501)
    expect(backend.table.get(A, 'tcp', 6881)?.externalPort).toBe(7000)
    backend.refuseNext = true
    expect((await call(A, 'DeletePortMapping', { NewExternalPort: 7000, NewProtocol: 'TCP' })).error).toBe(501)
    expect(backend.table.size).toBe(1)
  })

  it('argument errors: 402 for bad ports, protocol, lease, index; 716 for a wildcard external port; 726 for a remote host', async () => {
    const { call } = setup()
    expect((await call(A, 'AddPortMapping', ltAdd(A, 0))).error).toBe(716)
    expect((await call(A, 'AddPortMapping', { ...ltAdd(A, 1), NewExternalPort: '*' })).error).toBe(716)
    expect((await call(A, 'AddPortMapping', ltAdd(A, 70000))).error).toBe(402)
    expect((await call(A, 'AddPortMapping', ltAdd(A, 7000, { NewInternalPort: 0 }))).error).toBe(402)
    expect((await call(A, 'AddPortMapping', ltAdd(A, 7000, { NewProtocol: 'SCTP' }))).error).toBe(402)
    expect((await call(A, 'AddPortMapping', ltAdd(A, 7000, { NewLeaseDuration: '-1' }))).error).toBe(402)
    expect((await call(A, 'AddPortMapping', ltAdd(A, 7000, { NewRemoteHost: '198.51.100.9' }))).error).toBe(726)
    expect((await call(A, 'AddPortMapping', ltAdd(A, 7000, { NewRemoteHost: '*' }))).status).toBe(200)
    expect((await call(A, 'GetGenericPortMappingEntry', { NewPortMappingIndex: 'x' })).error).toBe(402)
    expect((await call(A, 'DeletePortMapping', { NewProtocol: 'TCP' })).error).toBe(402)
  })

  it('range limits: a port below port_forward_min_port or reserved is 718 on v1, 606 on v2; the client limit 501 / 728', async () => {
    const { call } = setup({ minPort: 1024, reserved: [51820], maxPerClient: 1 })
    expect((await call(A, 'AddPortMapping', ltAdd(A, 80))).error).toBe(718)
    expect((await call(A, 'AddPortMapping', ltAdd(A, 51820), SERVICE_IP2)).error).toBe(606)
    expect((await call(A, 'AddPortMapping', ltAdd(A, 7000))).status).toBe(200)
    expect((await call(A, 'AddPortMapping', ltAdd(A, 7001, { NewInternalPort: 2 }))).error).toBe(501)
    expect((await call(A, 'AddAnyPortMapping', ltAdd(A, 7001, { NewInternalPort: 2 }), SERVICE_IP2)).error).toBe(728)
  })

  it("v2: GetListOfPortMappings lists only the requester's mappings in range, DeletePortMappingRange deletes them; 730 when none, 733 for a reversed range", async () => {
    const { call, backend } = setup()
    for (const [c, ext, ip] of [
      [A, 7000, 1],
      [A, 7005, 2],
      [A, 9000, 3],
      [B, 7002, 4],
    ] as const)
      await call(c, 'AddPortMapping', ltAdd(c, ext, { NewInternalPort: ip }))
    const list = await call(
      A,
      'GetListOfPortMappings',
      { NewStartPort: 7000, NewEndPort: 7999, NewProtocol: 'TCP', NewManage: 1, NewNumberOfPorts: 0 },
      SERVICE_IP2,
    )
    expect([...list.body.matchAll(/<p:NewExternalPort>(\d+)</g)].map((m) => m[1])).toEqual(['7000', '7005'])
    expect(list.body).toContain('<NewPortListing><![CDATA[<p:PortMappingList')
    expect(
      (await call(A, 'GetListOfPortMappings', { NewStartPort: 7999, NewEndPort: 7000, NewProtocol: 'TCP', NewManage: 1, NewNumberOfPorts: 0 }, SERVICE_IP2))
        .error,
    ).toBe(733)
    expect((await call(A, 'DeletePortMappingRange', { NewStartPort: 7000, NewEndPort: 7999, NewProtocol: 'TCP', NewManage: 1 }, SERVICE_IP2)).status).toBe(200)
    expect(backend.table.leasesOf(A).map((l) => l.externalPort)).toEqual([9000])
    expect(backend.table.leasesOf(B).map((l) => l.externalPort)).toEqual([7002])
    expect((await call(A, 'DeletePortMappingRange', { NewStartPort: 7000, NewEndPort: 7999, NewProtocol: 'TCP', NewManage: 1 }, SERVICE_IP2)).error).toBe(730)
  })

  it("nat-upnp's request shape (SOAPAction JSON-quoted, NewEnabled 1, ttl 1800) parses and maps", async () => {
    // indutny/node-nat-upnp lib/nat-upnp/device.js Device.prototype.run + client.js portMapping
    const body =
      '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>' +
      `<u:AddPortMapping xmlns:u="${SERVICE_IP1}"><NewRemoteHost></NewRemoteHost><NewExternalPort>12345</NewExternalPort><NewProtocol>TCP</NewProtocol>` +
      `<NewInternalPort>12345</NewInternalPort><NewInternalClient>${A}</NewInternalClient><NewEnabled>1</NewEnabled><NewPortMappingDescription>node:nat:upnp</NewPortMappingDescription>` +
      '<NewLeaseDuration>1800</NewLeaseDuration></u:AddPortMapping></s:Body></s:Envelope>'
    const parsed = parseSoapRequest(body, JSON.stringify(`${SERVICE_IP1}#AddPortMapping`))
    expect(parsed.ok).toBe(true)
    const { backend } = setup()
    const r = await new UpnpService({ backend, log, uptimeSeconds: () => 0 }).control(
      SERVICE_IP1,
      A,
      parsed.ok ? parsed.value : { action: '', args: new Map() },
    )
    expect(r.status).toBe(200)
    expect(backend.table.get(A, 'tcp', 12345)).toMatchObject({ externalPort: 12345, description: 'node:nat:upnp', origin: 'upnp' })
  })
})
