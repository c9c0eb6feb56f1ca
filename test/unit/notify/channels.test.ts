/** Webhook, ntfy and command channels against real local servers and processes (no root). */
import { createServer, type IncomingMessage, type Server } from 'node:http'
import { mkdtemp, readFile, writeFile, chmod } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { commandChannel, envOf } from '../../../src/notify/command.js'
import type { Message } from '../../../src/notify/dispatcher.js'
import { formatTestResults, notifyTest, testEvent } from '../../../src/notify/index.js'
import { headerValue, ntfyChannel } from '../../../src/notify/ntfy.js'
import { safeUrl, sign, webhookChannel } from '../../../src/notify/webhook.js'

interface Got {
  headers: IncomingMessage['headers']
  body: string
}
const servers: Server[] = []
afterEach(async () => {
  for (const s of servers.splice(0))
    await new Promise((r) => {
      s.closeAllConnections()
      s.close(r)
    })
})
/** An HTTP server answering the statuses in turn (then 200); 'hang' never answers. */
async function receiver(statuses: (number | 'hang')[] = []): Promise<{ url: string; got: Got[] }> {
  const got: Got[] = []
  const s = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => (body += c))
    req.on('end', () => {
      got.push({ headers: req.headers, body })
      const st = statuses.shift() ?? 200
      if (st !== 'hang') res.writeHead(st).end()
    })
  })
  servers.push(s)
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  return { url: `http://127.0.0.1:${(s.address() as AddressInfo).port}/hook`, got }
}
const noSleep = (): Promise<void> => Promise.resolve()
const event: Message = { kind: 'event', event: testEvent(Date.UTC(2026, 11, 1)) }

describe('webhook', () => {
  it('POSTs the event as JSON, signed with HMAC-SHA256 of the exact body', async () => {
    const r = await receiver()
    await webhookChannel({ name: 'webhook-1', url: r.url, secret: 's3cret', sleep: noSleep }).send(event)
    expect(r.got).toHaveLength(1)
    const g = r.got[0]!
    expect(JSON.parse(g.body)).toMatchObject({ type: 'forward.created', external_port: 43956, public_address: '198.51.100.1' })
    expect(g.headers['x-wgpmp-signature']).toBe(sign('s3cret', g.body))
    expect(g.headers['x-wgpmp-signature']).toMatch(/^sha256=[0-9a-f]{64}$/)
    expect(g.headers['content-type']).toBe('application/json')
  })
  it('unsigned without a secret', async () => {
    const r = await receiver()
    await webhookChannel({ name: 'w', url: r.url, secret: null, sleep: noSleep }).send(event)
    expect(r.got[0]!.headers['x-wgpmp-signature']).toBeUndefined()
  })
  it('retries a 503 with doubling backoff, then delivers', async () => {
    const r = await receiver([503, 503])
    const waits: number[] = []
    await webhookChannel({ name: 'w', url: r.url, secret: null, backoffMs: 100, sleep: (ms) => (waits.push(ms), Promise.resolve()) }).send(event)
    expect(r.got).toHaveLength(3)
    expect(waits).toEqual([100, 200])
  })
  it('gives up at once on a 404, and after its retries on a dead server', async () => {
    const r = await receiver([404])
    await expect(webhookChannel({ name: 'w', url: r.url, secret: null, sleep: noSleep }).send(event)).rejects.toThrow('HTTP 404')
    expect(r.got).toHaveLength(1)
    const h = await receiver(['hang', 'hang'])
    const t = performance.now()
    await expect(webhookChannel({ name: 'w', url: h.url, secret: null, retries: 1, timeoutMs: 200, sleep: noSleep }).send(event)).rejects.toThrow(
      /gave up after 2 attempts/,
    )
    expect(performance.now() - t).toBeLessThan(3000)
  })
  it('never shows credentials or query strings', () => {
    expect(safeUrl('https://u:p@hooks.example/x?token=1')).toBe('https://hooks.example/x?…')
  })
})

describe('ntfy', () => {
  it("publishes in ntfy's format: text body, title, tags, priority and a bearer token", async () => {
    const r = await receiver()
    await ntfyChannel({ name: 'ntfy-1', url: r.url, token: 'tk_abc', sleep: noSleep }).send(event)
    const g = r.got[0]!
    expect(g.headers.title).toBe('wgpmp: test: forward created: wgpmp notify-test tcp/43956')
    expect(g.headers.tags).toBe('wgpmp,heavy_plus_sign')
    expect(g.headers.priority).toBe('3')
    expect(g.headers.authorization).toBe('Bearer tk_abc')
    expect(g.body).toBe('forward created: wgpmp notify-test (10.8.0.2) tcp 198.51.100.1:43956 -> 10.8.0.2:8080, NAT-PMP, 3600 s')
  })
  it('encodes a non-ASCII title (RFC 2047)', () => {
    expect(headerValue('Zoë')).toBe('=?UTF-8?B?Wm/Dqw==?=')
    expect(headerValue('plain')).toBe('plain')
  })
})

describe('command', () => {
  it('runs argv without a shell: the event on stdin and as WGPMP_* variables', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'wgpmp-cmd-'))
    const script = join(dir, 'hook.sh')
    await writeFile(script, `#!/bin/sh\ncat > "$1/stdin.json"\nenv | grep '^WGPMP_' | sort > "$1/env.txt"\necho "$2" > "$1/arg2"\n`)
    await chmod(script, 0o755)
    await commandChannel({ name: 'command-1', argv: [script, dir, '$(touch pwned) ; *'] }).send(event)
    expect(JSON.parse(await readFile(join(dir, 'stdin.json'), 'utf8'))).toMatchObject({ type: 'forward.created', client_address: '10.8.0.2' })
    const env = await readFile(join(dir, 'env.txt'), 'utf8')
    expect(env).toContain('WGPMP_EVENT=forward.created\n')
    expect(env).toContain('WGPMP_EXTERNAL_PORT=43956\n')
    expect(env).toContain('WGPMP_PUBLIC_ADDRESS=198.51.100.1\n')
    expect(env).toContain('WGPMP_CLIENT_NAME=wgpmp notify-test\n')
    expect(await readFile(join(dir, 'arg2'), 'utf8')).toBe('$(touch pwned) ; *\n')
  })
  it('a digest has WGPMP_EVENT=digest and the count', () => {
    expect(envOf({ kind: 'digest', events: [event.kind === 'event' ? event.event : testEvent()], dropped: 0 })).toEqual({
      WGPMP_EVENT: 'digest',
      WGPMP_COUNT: '1',
      WGPMP_DROPPED: '0',
    })
  })
  it('a hook past its timeout is killed and the delivery fails; so does a non-zero exit', async () => {
    const t = performance.now()
    await expect(commandChannel({ name: 'c', argv: ['/bin/sleep', '30'], timeoutMs: 300 }).send(event)).rejects.toThrow(/killed after 300 ms/)
    expect(performance.now() - t).toBeLessThan(5000)
    await expect(commandChannel({ name: 'c', argv: ['/bin/sh', '-c', 'echo nope >&2; exit 3'] }).send(event)).rejects.toThrow(/exit 3 nope/)
    await expect(commandChannel({ name: 'c', argv: ['/nonexistent/hook'] }).send(event)).rejects.toThrow(/command not found/)
  })
})

describe('notify-test', () => {
  it('sends the test event to every channel and reports each', async () => {
    const ok = await receiver()
    const bad = await receiver([500, 500, 500, 500])
    const dir = await mkdtemp(join(tmpdir(), 'wgpmp-nt-'))
    await writeFile(join(dir, 'secret'), 'k3y\n')
    const rs = await notifyTest({ webhooks: [{ url: ok.url, secret_file: join(dir, 'secret') }], ntfy: [{ url: bad.url }], commands: [['/bin/true']] })
    expect(rs.map((r) => [r.channel, r.ok])).toEqual([
      ['webhook-1', true],
      ['ntfy-1', false],
      ['command-1', true],
    ])
    expect(JSON.parse(ok.got[0]!.body)).toMatchObject({ test: true })
    expect(ok.got[0]!.headers['x-wgpmp-signature']).toBe(sign('k3y', ok.got[0]!.body))
    const text = formatTestResults(rs)
    expect(text).toMatch(/^webhook-1 +ok /m)
    expect(text).toMatch(/^ntfy-1 +FAILED .*HTTP 500/m)
  }, 20_000)
  it('an unreadable secret file is a config error naming the key', async () => {
    await expect(notifyTest({ webhooks: [{ url: 'http://127.0.0.1:9/x', secret_file: '/nonexistent/secret' }] })).rejects.toThrow(
      /secret_file \/nonexistent\/secret: cannot read/,
    )
  })
})
