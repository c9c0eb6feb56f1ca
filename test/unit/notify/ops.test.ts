/** Issue 13's smaller pieces: the pretty log format, the probe, the token-free metrics listener, the CLI tables. */
import { createSocket } from 'node:dgram'
import { createServer, type Server } from 'node:net'
import { PassThrough } from 'node:stream'
import { request } from 'undici'
import { afterEach, describe, expect, it } from 'vitest'
import { formatClients, formatRows, rowOfView } from '../../../src/cli/control.js'
import { createMetrics } from '../../../src/http/metrics.js'
import { startMetricsListener } from '../../../src/http/metrics-listen.js'
import { LastSeen, probeForward, probeView } from '../../../src/http/probe.js'
import { createLogger, prettyLine, resolveFormat, silentLogger } from '../../../src/log.js'

const closers: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const c of closers.splice(0)) await c()
})

describe('pretty logs', () => {
  it('one readable line per record, fields after the message, component first, name not repeated', () => {
    const line = prettyLine(
      JSON.stringify({
        level: 30,
        time: Date.UTC(2026, 11, 1, 12, 0, 1, 234),
        pid: 1,
        hostname: 'h',
        name: 'wgpmp',
        component: 'natpmp',
        msg: 'lease created',
        client: '10.8.0.2',
        clientName: 'my laptop',
        externalPort: 43956,
      }),
    )
    expect(line).toBe('12:00:01.234 INFO  natpmp: lease created client=10.8.0.2 clientName="my laptop" externalPort=43956')
  })
  it('writes through createLogger with format pretty, and JSON otherwise', () => {
    const out = new PassThrough()
    let text = ''
    out.on('data', (c: Buffer) => (text += c.toString()))
    createLogger('info', out, 'pretty').warn({ count: 3 }, 'leases expired')
    expect(text).toMatch(/^\d\d:\d\d:\d\d\.\d{3} WARN {2}leases expired count=3\n$/)
    text = ''
    createLogger('info', out, 'json').info('x')
    expect(JSON.parse(text)).toMatchObject({ msg: 'x', name: 'wgpmp' })
    expect(resolveFormat('auto', true)).toBe('pretty')
    expect(resolveFormat('auto', false)).toBe('json')
  })
})

describe('probe', () => {
  const listen = async (): Promise<number> => {
    const s: Server = createServer((c) => c.end())
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
    closers.push(() => new Promise<void>((r) => s.close(() => r())))
    return (s.address() as { port: number }).port
  }
  it('TCP: answered when something listens, refused when nothing does', async () => {
    const port = await listen()
    expect(await probeForward({ protocol: 'tcp', publicAddress: '127.0.0.1', port })).toMatchObject({ outcome: 'answered', target: `127.0.0.1:${port}` })
    const closed = await listen()
    await closers.pop()!()
    await new Promise((r) => setTimeout(r, 50))
    expect((await probeForward({ protocol: 'tcp', publicAddress: '127.0.0.1', port: closed })).outcome).toBe('refused')
  })
  it('UDP: answered on any reply, refused on port unreachable', async () => {
    const s = createSocket('udp4')
    s.on('message', (m, r) => s.send(m, r.port, r.address))
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r))
    closers.push(() => void s.close())
    expect((await probeForward({ protocol: 'udp', publicAddress: '127.0.0.1', port: s.address().port })).outcome).toBe('answered')
    const dead = createSocket('udp4')
    await new Promise<void>((r) => dead.bind(0, '127.0.0.1', r))
    const port = dead.address().port
    dead.close()
    expect((await probeForward({ protocol: 'udp', publicAddress: '127.0.0.1', port, timeoutMs: 1000 })).outcome).toBe('refused')
  })
  it('says the host firewall blocks instead of probing, when told so', async () => {
    const r = await probeForward({ protocol: 'tcp', publicAddress: '127.0.0.1', port: 9, hostFirewallBlocks: () => true })
    expect(r.outcome).toBe('host-firewall')
    expect(r.message).toMatch(/host firewall drops/)
  })
  it('a forward of an absent client is not probed; "both" probes TCP on the first port', async () => {
    expect(
      (await probeView({ protocol: 'udp', external_port: 1, client_address: null, public_address: null }, { localV4: '127.0.0.1', localV6: null })).outcome,
    ).toBe('error')
    const port = await listen()
    expect(
      await probeView(
        { protocol: 'both', external_port: `${port}-${port + 1}`, client_address: '10.8.0.2', public_address: '127.0.0.1' },
        { localV4: '127.0.0.1', localV6: null },
      ),
    ).toMatchObject({ outcome: 'answered', protocol: 'tcp' })
  })
  it('LastSeen keeps the newest request per address, bounded', () => {
    const s = new LastSeen(2)
    s.note('10.8.0.2', Date.UTC(2026, 0, 1))
    s.note('10.8.0.3', Date.UTC(2026, 0, 2))
    expect(s.latest(['10.8.0.2', '10.8.0.3'])).toBe('2026-01-02T00:00:00.000Z')
    s.note('10.8.0.4', Date.UTC(2026, 0, 3))
    expect(s.latest(['10.8.0.2'])).toBeNull()
    expect(s.latest(['10.8.0.9'])).toBeNull()
  })
})

describe('metrics_listen', () => {
  it('serves /metrics without a token and nothing else', async () => {
    const m = createMetrics({ forwardCounts: () => [{ protocol: 'tcp', origin: 'nat-pmp', count: 2 }], peers: () => ({ total: 1, connected: 1 }) })
    const l = await startMetricsListener({ host: '127.0.0.1', port: 0 }, m.registry, silentLogger())
    closers.push(() => l.close())
    const r = await request(`http://127.0.0.1:${l.address.port}/metrics`)
    expect(r.statusCode).toBe(200)
    expect(await r.body.text()).toContain('wgpmp_forwards{protocol="tcp",origin="nat-pmp"} 2')
    const other = await request(`http://127.0.0.1:${l.address.port}/api/portforwards`)
    expect(other.statusCode).toBe(404)
    await other.body.dump()
  })
})

describe('CLI tables', () => {
  it('forwards: client name, public address:port, target, origin, time left', () => {
    const row = rowOfView(
      {
        id: 'pmp-1',
        client_id: 'abc',
        protocol: 'tcp',
        external_port: 43956,
        internal_port: 8080,
        client_address: '10.8.0.2',
        origin: 'nat-pmp',
        lifetime_seconds: 3600,
        seconds_left: 61,
        created_at: '',
        removable: false,
        public_address: '198.51.100.1',
      },
      new Map([['abc', 'laptop']]),
    )
    expect(formatRows([row])).toBe(
      'CLIENT  PROTO  PUBLIC              TARGET         ORIGIN   LEFT\nlaptop  tcp    198.51.100.1:43956  10.8.0.2:8080  nat-pmp  1m01s\n',
    )
  })
  it('clients: name, id, address, state, handshake, last request', () => {
    const now = Date.UTC(2026, 11, 1, 12)
    const text = formatClients(
      [
        {
          id: 'abc',
          name: 'laptop',
          public_key: 'k',
          addresses: ['10.8.0.2'],
          endpoint: null,
          connected: true,
          latest_handshake: new Date(now - 30_000).toISOString(),
          rx_bytes: 0,
          tx_bytes: 0,
          last_request: new Date(now - 120_000).toISOString(),
        },
        { id: 'def', name: null, public_key: 'k2', addresses: [], endpoint: null, connected: false, latest_handshake: null, rx_bytes: 0, tx_bytes: 0 },
      ],
      now,
    )
    expect(text).toBe(
      'NAME    ID   ADDRESS   STATE         HANDSHAKE  LAST REQUEST\nlaptop  abc  10.8.0.2  connected     30s ago    2m ago\n-       def  -         disconnected  -          -\n',
    )
  })
})
