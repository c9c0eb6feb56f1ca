import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { Readable } from 'node:stream'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Ajv } from 'ajv'
import fc from 'fast-check'
import { request } from 'undici'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { loadApiToken, startApi, type ApiServer } from '../../../src/http/api.js'
import { renderPage } from '../../../src/http/page.js'
import { apiSchemas } from '../../../src/http/schemas.js'
import { isWgpmpError } from '../../../src/core/errors.js'
import { silentLogger } from '../../../src/log.js'
import { fakeDeps, PHONE, SEEDBOX, type Fake } from '../../helpers/fake-api-deps.js'

const TOKEN = 'test-token-0123456789abcdef'
let fake: Fake
let api: ApiServer
let base: string

beforeEach(async () => {
  fake = await fakeDeps()
  api = await startApi({ listen: { host: '127.0.0.1', port: 0 }, token: TOKEN, deps: fake.deps, log: silentLogger() })
  base = `http://127.0.0.1:${api.address.port}`
})
afterEach(async () => {
  await api.close()
  await fake.cleanup()
})

type Opts = { token?: string | null; body?: string; headers?: Record<string, string> }
async function call(method: 'GET' | 'POST' | 'DELETE' | 'PUT' | 'HEAD', path: string, o: Opts = {}) {
  const headers: Record<string, string> = { ...(o.headers ?? {}) }
  const token = o.token === undefined ? TOKEN : o.token
  if (token !== null) headers.authorization = `Bearer ${token}`
  if (o.body !== undefined && !('content-type' in headers)) headers['content-type'] = 'application/json'
  const r = await request(base + path, { method, headers, ...(o.body !== undefined ? { body: o.body } : {}) })
  const text = await r.body.text()
  let json: unknown = undefined
  if (String(r.headers['content-type'] ?? '').startsWith('application/json')) json = JSON.parse(text)
  return { status: r.statusCode, headers: r.headers, text, json }
}
const post = (path: string, body: unknown, o: Opts = {}) => call('POST', path, { ...o, body: typeof body === 'string' ? body : JSON.stringify(body) })
const forwardsPath = (id: string) => `/api/clients/${id}/portforwards`

const ajv = new Ajv({ strict: false })
const valid = (name: keyof typeof apiSchemas, v: unknown): boolean => {
  const ok = ajv.validate(apiSchemas[name], v)
  if (!ok) console.error(ajv.errors)
  return ok
}

describe('auth', () => {
  it.each([
    ['no header', { token: null }],
    ['wrong token', { token: 'test-token-0123456789abcdeX' }],
    ['a prefix of the token', { token: 'test-token' }],
    ['empty bearer', { token: '' }],
    ['basic scheme', { token: null, headers: { authorization: `Basic ${Buffer.from('x:' + TOKEN).toString('base64')}` } }],
  ] as const)('%s: 401 with no detail, on every protected route', async (_n, o) => {
    for (const [m, p] of [
      ['GET', '/api/clients'],
      ['GET', '/api/portforwards'],
      ['GET', forwardsPath(SEEDBOX)],
      ['POST', forwardsPath(SEEDBOX)],
      ['DELETE', `${forwardsPath(PHONE)}/tcp-443`],
      ['GET', '/metrics'],
      ['GET', '/api/nope'],
      ['GET', '/nope'],
    ] as const) {
      const r = await call(m, p, { ...o, ...(m === 'POST' ? { body: '{}' } : {}) })
      expect([m, p, r.status, r.text]).toEqual([m, p, 401, '{"error":"unauthorized"}'])
      expect(r.headers['www-authenticate']).toBe('Bearer')
    }
  })

  it('accepts the scheme in any case', async () => {
    expect((await call('GET', '/api/clients', { token: null, headers: { authorization: `bearer ${TOKEN}` } })).status).toBe(200)
  })

  it('loadApiToken trims, rejects short tokens and flags loose permissions', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'wgpmp-token-'))
    try {
      const f = join(dir, 'token')
      await writeFile(f, `  ${TOKEN}  \nsecond line\n`, { mode: 0o600 })
      await chmod(f, 0o600)
      expect(await loadApiToken(f)).toEqual({ token: TOKEN, loose: false })
      await chmod(f, 0o644)
      expect((await loadApiToken(f)).loose).toBe(true)
      await writeFile(f, 'short\n')
      await expect(loadApiToken(f)).rejects.toSatisfy((e) => isWgpmpError(e, 'WGPMP_CONFIG_INVALID') && /at least 16/.test((e as Error).message))
      await expect(loadApiToken(join(dir, 'missing'))).rejects.toThrow(/cannot read/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('page and metrics', () => {
  it('GET / serves the page without a token, with a strict CSP', async () => {
    const r = await call('GET', '/', { token: null })
    expect(r.status).toBe(200)
    expect(r.headers['content-type']).toBe('text/html; charset=utf-8')
    expect(r.text).toContain('data-gateway="10.8.0.1"')
    expect(String(r.headers['content-security-policy'])).toMatch(/^default-src 'none'; script-src 'sha256-[A-Za-z0-9+/=]+'; style-src 'sha256-/)
    expect((await call('HEAD', '/', { token: null })).text).toBe('')
    const p = await call('POST', '/', { body: '{}' })
    expect([p.status, p.headers.allow]).toEqual([405, 'GET, HEAD'])
  })

  it("the page carries UPnP's description URL only when UPnP is on (its setup line follows upnp_http_port)", () => {
    const htmlTag = (html: string): string => /<html [^>]*>/.exec(html)![0]
    expect(htmlTag(renderPage('10.8.0.1').html)).toBe('<html lang="en" data-gateway="10.8.0.1">')
    expect(htmlTag(renderPage('10.8.0.1', null).html)).toBe('<html lang="en" data-gateway="10.8.0.1">')
    const on = renderPage('10.8.0.1', 'http://10.8.0.1:2870/rootDesc.xml').html
    expect(htmlTag(on)).toBe('<html lang="en" data-gateway="10.8.0.1" data-upnp="http://10.8.0.1:2870/rootDesc.xml">')
    expect(on).not.toContain(':2869') // nothing in the script names a port of its own
    expect(htmlTag(renderPage('10.8.0.1', 'http://x/"><script>').html)).toBe(
      '<html lang="en" data-gateway="10.8.0.1" data-upnp="http://x/&#34;&#62;&#60;script&#62;">',
    )
  })

  it('GET /metrics serves the registry in Prometheus text format', async () => {
    const r = await call('GET', '/metrics')
    expect(r.status).toBe(200)
    expect(r.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/)
    expect(r.text).toContain('wgpmp_forwards{protocol="tcp",origin="static"} 1')
    expect(r.text).toContain('wgpmp_forwards{protocol="udp",origin="nat-pmp"} 1')
    expect(r.text).toContain('wgpmp_natpmp_requests_total{opcode="map_tcp",result="success"} 1')
    expect(r.text).toContain('wgpmp_natpmp_requests_total{opcode="map_udp",result="not_authorized"} 1')
    expect(r.text).toContain('wgpmp_driver_batch_seconds_bucket{le="0.005",result="ok"} 1')
    expect(r.text).toContain('wgpmp_peers_connected 1')
    expect(r.text).toContain('wgpmp_peers 2')
    expect(r.text).not.toContain('process_cpu') // not the global default registry
    expect((await call('POST', '/metrics', { body: '{}' })).status).toBe(405)
  })
})

describe('reading', () => {
  it('GET /api/clients lists peers per the schema', async () => {
    const r = await call('GET', '/api/clients')
    expect(r.status).toBe(200)
    expect(valid('GET /api/clients 200', r.json)).toBe(true)
    expect(r.json).toMatchObject([
      { id: SEEDBOX, name: 'seedbox <qbittorrent>', addresses: ['10.8.0.2'], connected: true },
      { id: PHONE, name: null, addresses: ['10.8.0.3'], connected: false },
    ])
    expect(r.headers['cache-control']).toBe('no-store')
  })

  it('GET /api/portforwards lists leases and static forwards per the schema', async () => {
    const r = await call('GET', '/api/portforwards')
    expect(r.status).toBe(200)
    expect(valid('GET /api/portforwards 200', r.json)).toBe(true)
    expect((r.json as { id: string; origin: string }[]).map((f) => [f.id, f.origin])).toEqual([
      ['pmp-1', 'nat-pmp'],
      ['pmp-2', 'nat-pmp'],
      ['tcp-443', 'static'],
    ])
  })

  it('DELETE /api/portforwards flushes every lease and keeps static forwards', async () => {
    const r = await call('DELETE', '/api/portforwards')
    expect([r.status, r.json]).toEqual([200, { flushed: 2 }])
    expect(((await call('GET', '/api/portforwards')).json as { origin: string }[]).map((f) => f.origin)).toEqual(['static'])
    const put = await call('PUT', '/api/portforwards', { body: '{}' })
    expect([put.status, put.headers.allow]).toEqual([405, 'GET, DELETE'])
  })

  it('GET /api/clients/{id}/portforwards: one client; 404 for unknown or malformed ids', async () => {
    const r = await call('GET', forwardsPath(PHONE))
    expect(valid('GET /api/clients/{id}/portforwards 200', r.json)).toBe(true)
    expect(r.json).toEqual([
      {
        id: 'tcp-443',
        client_id: PHONE,
        protocol: 'tcp',
        external_port: 443,
        internal_port: 8443,
        client_address: '10.8.0.3',
        origin: 'static',
        lifetime_seconds: null,
        seconds_left: null,
        created_at: expect.any(String) as string,
        removable: false,
      },
    ])
    for (const id of ['AAAAAAAAAAAA', '%ZZ', 'a%2Fb', 'x'.repeat(65)]) {
      const n = await call('GET', forwardsPath(id))
      expect([id, n.status, n.json]).toEqual([id, 404, { error: 'unknown client' }])
    }
  })

  it('unknown routes 404, wrong methods 405 with Allow', async () => {
    expect((await call('GET', '/api/nope')).status).toBe(404)
    expect((await call('GET', '/api/clients/x/y/z')).status).toBe(404)
    const put = await call('PUT', '/api/clients', { body: '{}' })
    expect([put.status, put.headers.allow]).toEqual([405, 'GET'])
    const del = await call('DELETE', forwardsPath(SEEDBOX))
    expect([del.status, del.headers.allow]).toEqual([405, 'GET, POST'])
    const get = await call('GET', `${forwardsPath(SEEDBOX)}/tcp-1`)
    expect([get.status, get.headers.allow]).toEqual([405, 'DELETE'])
  })
})

describe('POST /api/clients/{id}/portforwards', () => {
  it('201 with the forward; internal defaults to external; ranges are one batch', async () => {
    const r = await post(forwardsPath(SEEDBOX), { protocol: 'tcp', external_port: 8080, internal_port: 80 })
    expect(r.status).toBe(201)
    expect(valid('POST /api/clients/{id}/portforwards 201', r.json)).toBe(true)
    expect(r.json).toMatchObject({
      id: 'tcp-8080',
      client_id: SEEDBOX,
      protocol: 'tcp',
      external_port: 8080,
      internal_port: 80,
      client_address: '10.8.0.2',
      origin: 'static',
      lifetime_seconds: null,
      removable: true,
    })
    const range = await post(forwardsPath(SEEDBOX), { protocol: 'both', external_port: '27015-27030' })
    expect(range.json).toMatchObject({ id: 'both-27015-27030', external_port: '27015-27030', internal_port: '27015-27030' })
    expect(fake.batches.at(-1)).toHaveLength(32)
    const big = await post(forwardsPath(SEEDBOX), { protocol: 'udp', external_port: '30000-30999', internal_port: '40000-40999' })
    expect(big.status).toBe(201)
    expect(fake.batches.at(-1)).toHaveLength(1000)
    expect((await call('GET', forwardsPath(SEEDBOX))).json).toHaveLength(5)
  })

  it.each([
    ['overlaps a static forward', { protocol: 'both', external_port: '440-450' }, /overlaps the static forward 443:8443\/tcp/],
    ['held by a NAT-PMP lease', { protocol: 'udp', external_port: 51413 }, /udp port 51413 is already forwarded/],
    ['reserved (WireGuard port)', { protocol: 'udp', external_port: 51820 }, /udp port 51820 is reserved/],
  ])('409 when the port is %s', async (_n, body, error) => {
    const r = await post(forwardsPath(SEEDBOX), body)
    expect(r.status).toBe(409)
    expect((r.json as { error: string }).error).toMatch(error)
  })

  it.each([
    ['invalid JSON', '{"protocol":', /^invalid JSON/],
    ['empty body', '', /empty body/],
    ['an array', '[]', /\(body\): must be object/],
    ['missing protocol', { external_port: 80 }, /^protocol: required$/],
    ['missing external_port', { protocol: 'tcp' }, /^external_port: required$/],
    ['bad protocol', { protocol: 'sctp', external_port: 80 }, /^protocol: must be one of "tcp", "udp", "both"$/],
    ['port 0', { protocol: 'tcp', external_port: 0 }, /external_port: must be a port 1\.\.65535 or a range/],
    ['port 70000', { protocol: 'tcp', external_port: 70000 }, /external_port: must be a port/],
    ['port as text', { protocol: 'tcp', external_port: 'eighty' }, /external_port: must be a port/],
    ['fractional port', { protocol: 'tcp', external_port: 80.5 }, /external_port: must be a port/],
    ['unknown field', { protocol: 'tcp', external_port: 80, lifetime: 5 }, /^lifetime: unknown field$/],
    ['range length mismatch', { protocol: 'tcp', external_port: '1000-1010', internal_port: '2000-2001' }, /has 2 ports, external_port 1000-1010 has 11/],
    ['reversed range', { protocol: 'udp', external_port: '2000-1000' }, /reversed/],
    ['range beyond 65535', { protocol: 'udp', external_port: '65000-70000' }, /1\.\.65535/],
  ])('400 for %s, with the reason', async (_n, body, error) => {
    const r = await post(forwardsPath(SEEDBOX), body)
    expect(r.status).toBe(400)
    expect((r.json as { error: string }).error).toMatch(error)
  })

  it('lists every problem of a body', async () => {
    const r = await post(forwardsPath(SEEDBOX), { protocol: 'x', external_port: -1, y: 1 })
    expect(r.status).toBe(400)
    expect((r.json as { details: string[] }).details).toHaveLength(3)
  })

  it('415 without a JSON content type, 413 above 64 KiB, 404 for an unknown client', async () => {
    expect((await call('POST', forwardsPath(SEEDBOX), { body: 'protocol=tcp', headers: { 'content-type': 'application/x-www-form-urlencoded' } })).status).toBe(
      415,
    )
    const big = await post(forwardsPath(SEEDBOX), JSON.stringify({ protocol: 'tcp', external_port: 80, pad: 'x'.repeat(70_000) }))
    expect([big.status, big.json]).toEqual([413, { error: 'body larger than 65536 bytes' }])
    expect((await post(forwardsPath('AAAAAAAAAAAA'), { protocol: 'tcp', external_port: 80 })).status).toBe(404)
  })

  it('413 for a chunked body without a length, and the server keeps serving', async () => {
    const chunks = Readable.from(Array.from({ length: 20 }, () => Buffer.alloc(8192, 0x20)))
    const r = await request(base + forwardsPath(SEEDBOX), {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: chunks,
    }).catch((e: unknown) => e)
    if (!(r instanceof Error)) expect((r as { statusCode: number }).statusCode).toBe(413)
    expect((await call('GET', '/api/clients')).status).toBe(200)
  })

  it('500 without detail when the kernel refuses; nothing is stored', async () => {
    fake.refuse(true)
    const r = await post(forwardsPath(SEEDBOX), { protocol: 'tcp', external_port: 9000 })
    expect([r.status, r.json]).toEqual([500, { error: 'internal error' }])
    fake.refuse(false)
    expect((await call('GET', forwardsPath(SEEDBOX))).json).toHaveLength(2)
  })
})

describe('DELETE /api/clients/{id}/portforwards/{forwardId}', () => {
  it('204, then 404; its ports are released in one batch and can be taken again', async () => {
    await post(forwardsPath(SEEDBOX), { protocol: 'udp', external_port: '27015-27030' })
    const r = await call('DELETE', `${forwardsPath(SEEDBOX)}/udp-27015-27030`)
    expect([r.status, r.text]).toEqual([204, ''])
    expect(fake.batches.at(-1)!.map((c) => c.op)).toEqual(Array(16).fill('delete'))
    expect((await call('DELETE', `${forwardsPath(SEEDBOX)}/udp-27015-27030`)).json).toEqual({ error: 'unknown forward' })
    expect((await post(forwardsPath(PHONE), { protocol: 'udp', external_port: 27020 })).status).toBe(201)
  })

  it("404 for an unknown client, another client's forward, or a malformed id; 409 for a config forward", async () => {
    expect((await call('DELETE', `${forwardsPath('AAAAAAAAAAAA')}/tcp-443`)).json).toEqual({ error: 'unknown client' })
    expect((await call('DELETE', `${forwardsPath(SEEDBOX)}/tcp-443`)).json).toEqual({ error: 'unknown forward' })
    expect((await call('DELETE', `${forwardsPath(SEEDBOX)}/%ZZ`)).status).toBe(404)
    expect((await call('DELETE', `${forwardsPath(SEEDBOX)}/pmp-1`)).status).toBe(404)
    const c = await call('DELETE', `${forwardsPath(PHONE)}/tcp-443`)
    expect([c.status, c.json]).toEqual([409, { error: 'this forward is defined in the config file; remove it there' }])
  })
})

describe('robustness', () => {
  it('never crashes on random bodies and paths', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 200 }), fc.webPath(), async (body, path) => {
        const r = await post(forwardsPath(SEEDBOX), body)
        expect([201, 400, 409]).toContain(r.status)
        const g = await call('GET', path.startsWith('/') ? path : `/${path}`)
        expect(g.status).toBeLessThan(500)
      }),
      { seed: 4, numRuns: 60 },
    )
    expect((await call('GET', '/api/clients')).status).toBe(200)
  })

  it('answers 400 to a malformed request line and keeps serving', async () => {
    const reply = await new Promise<string>((resolve, reject) => {
      const s = connect(api.address.port, '127.0.0.1', () => s.write('GARBAGE\r\n\r\n'))
      let data = ''
      s.on('data', (d: Buffer) => (data += d.toString()))
      s.on('end', () => resolve(data))
      s.on('error', reject)
    })
    expect(reply).toMatch(/^HTTP\/1\.1 400/)
    expect((await call('GET', '/api/clients')).status).toBe(200)
  })

  it('close() is idempotent', async () => {
    await api.close()
    await api.close()
    await expect(call('GET', '/api/clients')).rejects.toThrow()
  })
})
