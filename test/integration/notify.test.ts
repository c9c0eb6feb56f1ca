/**
 * Notifications in the namespace lab: the daemon (nft driver, WireGuard, natpmpc) tells a webhook
 * receiver, an SMTP sink (Debian's python3-aiosmtpd) and a command hook about forwards; a
 * 1,000-port static range is one digest; a webhook that never answers slows no NAT-PMP reply.
 */
import { createHmac } from 'node:crypto'
import { chmod, readFile, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isRoot, startLab, waitFor, type Lab } from './lab.js'
import { listen } from './traffic.js'
import { jsonLines, labConfig, MAIN, natpmpc, startWgpmp, type Wgpmp } from './wgpmp-proc.js'

/**
 * The webhook receiver, run with node inside the server namespace: `node sink.mjs PORT`. Prints
 * one JSON line per request it has read ({ path, headers, body }). /live answers 200; /dead
 * answers 200 until a line "hang" arrives on stdin, and from then on never answers.
 */
const SINK_JS = `import { createServer } from 'node:http'

const port = Number(process.argv[2])
let hang = false
process.stdin.setEncoding('utf8')
process.stdin.on('data', (d) => {
  if (d.includes('hang')) hang = true
  process.stdout.write(JSON.stringify({ control: 'hang' }) + '\\n')
})
const server = createServer((req, res) => {
  let body = ''
  req.setEncoding('utf8')
  req.on('data', (c) => (body += c))
  req.on('end', () => {
    process.stdout.write(JSON.stringify({ path: req.url, headers: req.headers, body, hanging: req.url === '/dead' && hang }) + '\\n')
    if (req.url === '/dead' && hang) return // never answers
    res.writeHead(200).end()
  })
})
server.listen(port, '127.0.0.1', () => process.stdout.write(JSON.stringify({ listening: port }) + '\\n'))
`
const PY = '/usr/bin/python3'
const HOOK_PORT = 18080
const SMTP_PORT = 2525
const SECRET = 'lab-webhook-secret-0123'
const TOKEN = 'lab-api-token-0123456789abcdef'

interface Hit {
  control?: string
  path?: string
  headers?: Record<string, string>
  body?: string
  hanging?: boolean
  listening?: number
}
type Payload = Record<string, unknown> & { type: string }
const hasAiosmtpd = existsSync('/usr/lib/python3/dist-packages/aiosmtpd')

describe.runIf(isRoot && hasAiosmtpd)('notifications in the lab (webhook, email, command, digest, a dead webhook)', () => {
  let lab: Lab
  let wgpmp: Wgpmp
  const hits: Hit[] = []
  let smtpOut = ''
  let sinkIn: NodeJS.WritableStream
  const live = (): Payload[] => hits.filter((h) => h.path === '/live').map((h) => JSON.parse(h.body!) as Payload)
  const curl = async (method: string, path: string, body?: unknown): Promise<unknown> => {
    const args = ['-sS', '-X', method, '-H', `authorization: Bearer ${TOKEN}`, `http://127.0.0.1:5352${path}`]
    if (body !== undefined) args.push('-H', 'content-type: application/json', '--data', JSON.stringify(body))
    const r = await lab.exec('srv', 'curl', args)
    return r.stdout ? JSON.parse(r.stdout) : null
  }

  beforeAll(async () => {
    lab = await startLab()
    await writeFile(`${lab.dir}/sink.mjs`, SINK_JS)
    const sink = lab.spawn('srv', 'node', [`${lab.dir}/sink.mjs`, String(HOOK_PORT)], { reject: false, buffer: false, stdin: 'pipe' })
    sinkIn = sink.stdin
    jsonLines<Hit>(
      sink.stdout,
      (h) => hits.push(h),
      () => ({}),
    )
    const smtp = lab.spawn('srv', PY, ['-u', '-m', 'aiosmtpd', '-n', '-l', `127.0.0.1:${SMTP_PORT}`], { reject: false, buffer: false })
    smtp.stdout?.setEncoding('utf8')
    smtp.stdout?.on('data', (c: string) => (smtpOut += c))
    await waitFor(() => hits.some((h) => h.listening === HOOK_PORT), { what: 'webhook receiver' })
    await writeFile(`${lab.dir}/hook.secret`, SECRET + '\n', { mode: 0o600 })
    await writeFile(`${lab.dir}/api.token`, TOKEN + '\n', { mode: 0o600 })
    await writeFile(`${lab.dir}/hook.sh`, '#!/bin/sh\n{ env | grep "^WGPMP_" | sort; echo ---; } >> "$1"\ncat >> "$1.json"\n')
    await chmod(`${lab.dir}/hook.sh`, 0o755)
    await waitFor(async () => (await lab.exec('srv', 'ss', ['-ltn'])).stdout.includes(`:${SMTP_PORT}`), { what: 'SMTP sink' })
    wgpmp = await startWgpmp(
      lab,
      labConfig(lab, {
        port_forward_min_port: 20000,
        port_forward_max_port: 22100,
        lifetime_min_seconds: 2,
        max_forwards_per_client: 1000,
        api_token_file: `${lab.dir}/api.token`,
        metrics_listen: '127.0.0.1:9352',
        clients: { [lab.pubkeys.c1]: { name: 'c1-laptop' } },
        notifications: {
          webhooks: [
            { url: `http://127.0.0.1:${HOOK_PORT}/live`, secret_file: `${lab.dir}/hook.secret` },
            { url: `http://127.0.0.1:${HOOK_PORT}/dead`, timeout_seconds: 3 },
          ],
          email: { smtp_url: `smtp://127.0.0.1:${SMTP_PORT}`, from: 'wgpmp@lab.test', to: ['ops@lab.test'] },
          commands: [[`${lab.dir}/hook.sh`, `${lab.dir}/hook.out`]],
          coalesce_ms: 300,
          rate_limit_per_minute: 600,
        },
      }),
    )
    await listen(lab, 'c1', 'tcp', lab.ips.c1, 8080, 'c1-web')
  }, 180_000)
  afterAll(async () => {
    await wgpmp?.stop()
    await lab?.down()
  })

  it('a natpmpc mapping: the webhook gets a signed forward.created, the SMTP sink an email, the hook its variables', async () => {
    const r = await natpmpc(lab, 'c1', ['-a', '20010', '8080', 'tcp', '3600'])
    expect(r.port).toBe(20010)
    const hit = await waitFor(() => hits.find((h) => h.path === '/live' && h.body?.includes('"external_port":20010')), { what: 'webhook POST' })
    const e = JSON.parse(hit.body!) as Payload
    expect(e).toMatchObject({
      type: 'forward.created',
      client_name: 'c1-laptop',
      client_address: lab.ips.c1,
      protocol: 'tcp',
      public_address: lab.ips.public,
      external_port: 20010,
      internal_port: 8080,
      origin: 'nat-pmp',
      lifetime_seconds: 3600,
    })
    expect(hit.headers!['x-wgpmp-signature']).toBe('sha256=' + createHmac('sha256', SECRET).update(hit.body!, 'utf8').digest('hex'))
    expect(hits.find((h) => h.path === '/dead')?.headers?.['x-wgpmp-signature']).toBeUndefined() // no secret there
    await waitFor(() => smtpOut.includes('Subject: wgpmp: forward created: c1-laptop tcp/20010'), { what: 'email at the SMTP sink' })
    expect(smtpOut).toContain('To: ops@lab.test')
    expect(smtpOut.replace(/=\r?\n/g, '')).toContain(`${lab.ips.public}:20010 -> ${lab.ips.c1}:8080`) // quoted-printable, soft breaks
    const env = await waitFor(async () => (existsSync(`${lab.dir}/hook.out`) ? await readFile(`${lab.dir}/hook.out`, 'utf8') : null), { what: 'command hook' })
    for (const line of [
      'WGPMP_EVENT=forward.created',
      'WGPMP_CLIENT_NAME=c1-laptop',
      `WGPMP_CLIENT_ADDRESS=${lab.ips.c1}`,
      `WGPMP_PUBLIC_ADDRESS=${lab.ips.public}`,
      'WGPMP_EXTERNAL_PORT=20010',
      'WGPMP_INTERNAL_PORT=8080',
      'WGPMP_PROTOCOL=tcp',
      'WGPMP_ORIGIN=nat-pmp',
      'WGPMP_LIFETIME_SECONDS=3600',
    ])
      expect(env).toContain(line + '\n')
    expect(JSON.parse((await readFile(`${lab.dir}/hook.out.json`, 'utf8')).split('\n')[0]!)).toMatchObject({ type: 'forward.created', external_port: 20010 })
  })

  it('a short lease: forward.removed with reason expired', async () => {
    const r = await natpmpc(lab, 'c1', ['-a', '20020', '8081', 'tcp', '2'])
    expect(r.port).toBe(20020)
    const e = await waitFor(() => live().find((p) => p.type === 'forward.removed' && p.external_port === 20020), { timeoutMs: 8_000, what: 'expired event' })
    expect(e).toMatchObject({ reason: 'expired', client_name: 'c1-laptop', lifetime_seconds: 2 })
  })

  it('a 1,000-port static range is one digest per channel', async () => {
    const clients = (await curl('GET', '/api/clients')) as { id: string; addresses: string[] }[]
    const c2 = clients.find((c) => c.addresses.includes(lab.ips.c2))!
    const before = hits.length
    const created = (await curl('POST', `/api/clients/${c2.id}/portforwards`, { protocol: 'udp', external_port: '21000-21999' })) as { id: string }
    expect(created.id).toBe('udp-21000-21999')
    const digest = await waitFor(() => live().find((p) => p.type === 'digest' && (p.counts as Record<string, number>)['forward.created'] === 1000), {
      what: 'digest',
    })
    expect(digest).toMatchObject({ count: 1000, omitted: 0, dropped: 0 })
    expect((digest.events as Payload[]).map((x) => x.external_port)).toEqual(Array.from({ length: 1000 }, (_, i) => 21000 + i))
    await new Promise((r) => setTimeout(r, 1500)) // anything more would have come by now
    const after = hits.slice(before).filter((h) => h.path === '/live')
    expect(after).toHaveLength(1)
    await waitFor(() => smtpOut.includes('Subject: wgpmp: 1000 forwards created'), { what: 'digest email' })
    await new Promise((r) => setTimeout(r, 1000))
    expect(smtpOut.split('Subject: wgpmp: 1000 forwards created')).toHaveLength(2) // exactly one such email
    expect(smtpOut).not.toMatch(/Subject: wgpmp: forward created: \S+ udp\/21/) // and no single-port ones
  })

  it('a webhook that never answers slows no NAT-PMP reply and holds up no other channel', async () => {
    const timed = async (port: number): Promise<number> => {
      const t = performance.now()
      const r = await natpmpc(lab, 'c2', ['-a', String(port), String(port), 'tcp', '3600'])
      expect(r.port).toBe(port)
      return performance.now() - t
    }
    const healthy: number[] = []
    for (let i = 0; i < 5; i++) healthy.push(await timed(20100 + i))
    sinkIn.write('hang\n')
    await waitFor(() => hits.some((h) => h.control === 'hang'), { what: 'sink in hang mode' })
    await natpmpc(lab, 'c1', ['-a', '20200', '8082', 'tcp', '3600'])
    await waitFor(() => hits.some((h) => h.path === '/dead' && h.hanging), { what: 'a delivery stuck at the dead webhook' })
    const stuck: number[] = []
    for (let i = 0; i < 5; i++) stuck.push(await timed(20110 + i))
    // Every reply came; none waited anywhere near the dead webhook's 3 s timeout.
    expect(Math.max(...stuck)).toBeLessThan(2000)
    await waitFor(
      () =>
        live().some(
          (p) => (p.type === 'forward.created' && p.external_port === 20114) || (p.type === 'digest' && JSON.stringify(p).includes('"external_port":20114')),
        ),
      { what: 'live webhook still served' },
    )
    process.stdout.write(
      `notify lab: natpmpc round trip healthy ${healthy.map((x) => x.toFixed(0)).join('/')} ms, with a dead webhook ${stuck.map((x) => x.toFixed(0)).join('/')} ms\n`,
    )
    const metrics = (await lab.exec('srv', 'curl', ['-sS', '-H', `authorization: Bearer ${TOKEN}`, 'http://127.0.0.1:5352/metrics'])).stdout
    expect(metrics).toMatch(/wgpmp_notifications_total\{channel="webhook-1",outcome="sent"\} \d+/)
  }, 60_000)

  it("the page's Test probes a forward through the daemon's own DNAT: answered, refused", async () => {
    const fs = (await curl('GET', '/api/portforwards')) as { id: string; client_id: string; external_port: number; public_address: string }[]
    const web = fs.find((f) => f.external_port === 20010)!
    expect(web.public_address).toBe(lab.ips.public)
    expect(await curl('POST', `/api/clients/${web.client_id}/portforwards/${web.id}/test`)).toMatchObject({
      outcome: 'answered',
      target: `${lab.ips.public}:20010`,
    })
    const none = fs.find((f) => f.external_port === 20200)! // to c1:8082, where nothing listens
    expect(await curl('POST', `/api/clients/${none.client_id}/portforwards/${none.id}/test`)).toMatchObject({ outcome: 'refused' })
  })

  it('wgpmp forwards / clients print tables with names and public address:port; metrics_listen needs no token', async () => {
    const f = await lab.exec('srv', 'node', [MAIN, 'forwards', '--config', wgpmp.configFile])
    expect(f.stdout).toMatch(
      new RegExp(`^c1-laptop +tcp +${lab.ips.public.replace(/\./g, '\\.')}:20010 +${lab.ips.c1.replace(/\./g, '\\.')}:8080 +nat-pmp `, 'm'),
    )
    const c = await lab.exec('srv', 'node', [MAIN, 'clients', '--config', wgpmp.configFile])
    expect(c.stdout).toMatch(/^c1-laptop +\S+ +10\.8\.0\.2\S* +connected /m)
    const j = JSON.parse((await lab.exec('srv', 'node', [MAIN, 'clients', '--json', '--config', wgpmp.configFile])).stdout) as {
      name: string | null
      last_request: string | null
    }[]
    expect(j.find((x) => x.name === 'c1-laptop')?.last_request).toMatch(/^20\d\d-/)
    const m = await lab.exec('srv', 'curl', ['-sS', 'http://127.0.0.1:9352/metrics'])
    expect(m.stdout).toContain('wgpmp_forwards{protocol="udp",origin="static"} 1000')
    expect(wgpmp.lines.find((l) => l.msg === 'lease created' && l.externalPort === 20010)).toMatchObject({ clientName: 'c1-laptop', name: 'wgpmp' })
    expect(wgpmp.lines.filter((l) => String(l.msg).startsWith('peer ')).every((l) => l.name === 'wgpmp')).toBe(true)
  })

  it('notify-test reaches every channel and says which failed', async () => {
    const r = await lab.exec('srv', 'node', [MAIN, 'notify-test', '--config', wgpmp.configFile], { reject: false, timeout: 60_000 })
    expect(r.stdout).toMatch(/^webhook-1 +ok /m)
    expect(r.stdout).toMatch(/^webhook-2 +FAILED /m) // the dead one
    expect(r.stdout).toMatch(/^email +ok /m)
    expect(r.stdout).toMatch(/^command-1 +ok /m)
    expect(r.exitCode).toBe(1)
  }, 70_000)
})
