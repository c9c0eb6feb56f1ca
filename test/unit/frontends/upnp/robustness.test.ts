/** Never throws, never crashes: random and mutated SOAP bodies and SSDP packets; the HTTP server's limits; the input-chain admits. */
import { readdirSync, readFileSync } from 'node:fs'
import { connect } from 'node:net'
import fc from 'fast-check'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildIptablesBase, parseIptablesSave } from '../../../../src/drivers/iptables.js'
import { buildBaseScript } from '../../../../src/drivers/nft-batch.js'
import { rootDescription, SERVICE_IP1, SERVICE_IP2 } from '../../../../src/frontends/upnp/description.js'
import { startUpnpHttp, type UpnpHttpServer } from '../../../../src/frontends/upnp/http.js'
import { deviceIds } from '../../../../src/frontends/upnp/index.js'
import { UpnpService } from '../../../../src/frontends/upnp/service.js'
import { parseMSearch } from '../../../../src/frontends/upnp/ssdp-codec.js'
import { parseSoapRequest } from '../../../../src/frontends/upnp/soap.js'
import { FakeBackend } from './fake-backend.js'

const log = pino({ level: 'silent' })
const FIXTURES = new URL('../../../fixtures/upnp/miniupnpc-2.2.4/', import.meta.url)
const bodies = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.request.txt'))
  .map((f) => {
    const t = readFileSync(new URL(f, FIXTURES), 'utf8')
    return { soapAction: /^SOAPAction: (.*)$/im.exec(t)?.[1], body: t.slice(t.indexOf('\r\n\r\n') + 4) }
  })
const SEARCH = 'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: ssdp:all\r\nMAN: "ssdp:discover"\r\nMX: 2\r\n\r\n'

/** A string with some of its characters replaced, deleted or duplicated. */
const mutated = (base: string) =>
  fc
    .array(
      fc.tuple(
        fc.nat(base.length),
        fc.constantFrom('del', 'dup', 'rep'),
        fc.constantFrom('<', '>', '&', '/', '"', '#', ':', '\u0000', 'é', '<!DOCTYPE', ']]>', '<![CDATA[', ' ', '9'),
      ),
      { maxLength: 8 },
    )
    .map((ops) =>
      ops.reduce(
        (s, [i, op, c]) =>
          op === 'del' ? s.slice(0, i) + s.slice(i + 1) : op === 'dup' ? s.slice(0, i) + s.slice(i, i + 20) + s.slice(i) : s.slice(0, i) + c + s.slice(i + 1),
        base,
      ),
    )

describe('never throws', () => {
  const backend = new FakeBackend({ clients: ['10.8.0.2'] })
  const service = new UpnpService({ backend, log, uptimeSeconds: () => 1 })

  it('parseSoapRequest + control over random and mutated real bodies: a result or a fault, always', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ maxLength: 400 }),
          fc.constantFrom(...bodies).chain((b) => mutated(b.body)),
        ),
        fc.option(fc.oneof(fc.string({ maxLength: 80 }), fc.constantFrom(...bodies.map((b) => b.soapAction ?? ''))), { nil: undefined }),
        fc.constantFrom(SERVICE_IP1, SERVICE_IP2),
        async (body, soapAction, st) => {
          const r = parseSoapRequest(body, soapAction)
          if (!r.ok) {
            expect([401, 402]).toContain(r.error)
            return
          }
          const reply = await service.control(st, '10.8.0.2', r.value)
          expect([200, 500]).toContain(reply.status)
          expect(reply.body.startsWith('<?xml')).toBe(true)
        },
      ),
      { numRuns: 3000 },
    )
    expect(backend.table.size).toBeLessThanOrEqual(128)
  })

  it('parseMSearch over random and mutated searches', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 600 }),
          mutated(SEARCH).map((s) => Buffer.from(s, 'latin1')),
        ),
        (b) => {
          const r = parseMSearch(b)
          expect(r === null || (typeof r.st === 'string' && r.mx >= 0 && r.mx <= 5)).toBe(true)
        },
      ),
      { numRuns: 5000 },
    )
  })
})

describe('HTTP server limits', () => {
  let server: UpnpHttpServer
  const backend = new FakeBackend({ clients: ['127.0.0.1'] })
  beforeAll(async () => {
    server = await startUpnpHttp({
      host: '127.0.0.1',
      port: 0,
      rootDescription: rootDescription(deviceIds('x'), '0'),
      service: new UpnpService({ backend, log, uptimeSeconds: () => 1 }),
      isClient: async (a) => backend.isClient(a),
      server: 'test',
      log,
      headersTimeoutMs: 500,
      requestTimeoutMs: 1000,
    })
  })
  afterAll(() => server.close())
  const raw = (text: string, waitMs = 3000): Promise<string> =>
    new Promise((resolve) => {
      const s = connect(server.address.port, '127.0.0.1')
      const chunks: Buffer[] = []
      const t = setTimeout(() => s.destroy(), waitMs)
      s.on('data', (d: Buffer) => chunks.push(d))
      s.on('close', () => {
        clearTimeout(t)
        resolve(Buffer.concat(chunks).toString('utf8'))
      })
      s.on('error', () => {})
      s.write(text)
    })
  const status = (s: string) => s.split('\r\n')[0]

  it('GET serves the documents with an XML content type; POST on a document 405; unknown paths 404', async () => {
    const r = await raw('GET /rootDesc.xml HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
    expect(status(r)).toBe('HTTP/1.1 200 OK')
    expect(r).toMatch(/^Content-Type: text\/xml; charset="utf-8"$/m)
    expect(status(await raw('POST /rootDesc.xml HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'))).toBe(
      'HTTP/1.1 405 Method Not Allowed',
    )
    expect(status(await raw('GET /etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'))).toBe('HTTP/1.1 404 Not Found')
  })
  it('no eventing: SUBSCRIBE is 405 (CallStranger), other methods 501', async () => {
    const sub = await raw('SUBSCRIBE /ctl/IPConn HTTP/1.1\r\nHost: x\r\nCALLBACK: <http://192.0.2.1/>\r\nNT: upnp:event\r\nConnection: close\r\n\r\n')
    expect(status(sub)).toBe('HTTP/1.1 405 Method Not Allowed')
    expect(status(await raw('PUT /ctl/IPConn HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'))).toBe('HTTP/1.1 501 Not Implemented')
  })
  it('bodies over 16 KiB get 413, announced or counted (chunked)', async () => {
    expect(status(await raw('POST /ctl/IPConn HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n' + 'x'.repeat(1000)))).toBe(
      'HTTP/1.1 413 Payload Too Large',
    )
    const chunk = 'x'.repeat(8000)
    const chunked = `POST /ctl/IPConn HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${[1, 2, 3].map(() => `${(8000).toString(16)}\r\n${chunk}\r\n`).join('')}0\r\n\r\n`
    expect(status(await raw(chunked))).toBe('HTTP/1.1 413 Payload Too Large')
  })
  it('malformed SOAP gets a SOAP fault, garbage a 400, a slow client is cut off by the header timeout', async () => {
    const bad = '<s:Envelope><s:Body><u:AddPortMapping>'
    const r = await raw(
      `POST /ctl/IPConn HTTP/1.1\r\nHost: x\r\nSOAPAction: "${SERVICE_IP1}#AddPortMapping"\r\nContent-Length: ${bad.length}\r\nConnection: close\r\n\r\n${bad}`,
    )
    expect(status(r)).toBe('HTTP/1.1 500 Internal Server Error')
    expect(r).toContain('<errorCode>402</errorCode>')
    expect(status(await raw('\u0000\u0001garbage\r\n\r\n'))).not.toMatch(/200/)
    const started = Date.now()
    await raw('GET /rootDesc.xml HTTP/1.1\r\nHost: x\r\n', 5000) // never finishes its headers
    expect(Date.now() - started).toBeLessThan(4000)
  }, 10_000)
  it('a non-client gets 403 and nothing else', async () => {
    const other = await startUpnpHttp({
      host: '127.0.0.1',
      port: 0,
      rootDescription: 'secret',
      service: new UpnpService({ backend, log, uptimeSeconds: () => 1 }),
      isClient: () => Promise.resolve(false),
      server: 'test',
      log,
    })
    const r = await new Promise<string>((resolve) => {
      const s = connect(other.address.port, '127.0.0.1')
      let got = ''
      s.on('data', (d: Buffer) => (got += d.toString()))
      s.on('close', () => resolve(got))
      s.write('GET /rootDesc.xml HTTP/1.1\r\nHost: x\r\n\r\n')
    })
    await other.close()
    expect(status(r)).toBe('HTTP/1.1 403 Forbidden')
    expect(r).not.toContain('secret')
  })
})

describe('input chain admits', () => {
  it('nft: the wg_only set gets udp . 1900 and tcp . <http port>; the input rule drops them off the WireGuard interface', () => {
    const text = buildBaseScript(readFileSync(new URL('../../../../nft/wgpmp.nft', import.meta.url), 'utf8'), {
      publicV4: ['203.0.113.7'],
      wgInterfaces: ['wg0'],
      wgOnly: [
        { protocol: 'udp', port: 1900 },
        { protocol: 'tcp', port: 2869 },
      ],
    })
    expect(text).toContain('add element inet wgpmp wg_only { udp . 1900, tcp . 2869 }')
    expect(text).toMatch(/meta l4proto \. th dport @wg_only iifname != @wg_ifnames drop/)
    expect(buildBaseScript('table inet wgpmp {}', { publicV4: [], wgInterfaces: ['wg0'] })).not.toContain('wg_only {')
  })
  it('iptables: RETURN from each WireGuard interface, then DROP, per service', () => {
    const empty = parseIptablesSave('', 'nat')
    const b = buildIptablesBase(
      {
        publicV4: ['203.0.113.7'],
        wgInterfaces: ['wg0'],
        wgOnly: [
          { protocol: 'udp', port: 1900 },
          { protocol: 'tcp', port: 2869 },
        ],
      },
      { nat: empty, filter: empty },
    )
    const lines = b.filter.split('\n').filter((l) => l.startsWith('-A WGPMP-INPUT'))
    expect(lines).toEqual([
      '-A WGPMP-INPUT -i wg0 -p udp -m udp --dport 5351 -j RETURN',
      '-A WGPMP-INPUT -p udp -m udp --dport 5351 -j DROP',
      '-A WGPMP-INPUT -i wg0 -p udp -m udp --dport 1900 -j RETURN',
      '-A WGPMP-INPUT -p udp -m udp --dport 1900 -j DROP',
      '-A WGPMP-INPUT -i wg0 -p tcp -m tcp --dport 2869 -j RETURN',
      '-A WGPMP-INPUT -p tcp -m tcp --dport 2869 -j DROP',
    ])
  })
})
