/** Builds the channels and the dispatcher from the `notifications` config, and runs `wgpmp notify-test`. */
import { readFile } from 'node:fs/promises'
import type { ConfigInput } from '../config/schema.js'
import { WgpmpError } from '../core/errors.js'
import type { Logger } from '../log.js'
import type { Clock } from '../core/clock.js'
import { commandChannel } from './command.js'
import { Dispatcher, errText, type Channel, type Outcome } from './dispatcher.js'
import { emailChannel } from './email.js'
import type { WgpmpEvent } from './events.js'
import { ntfyChannel } from './ntfy.js'
import { webhookChannel } from './webhook.js'

/** The `notifications` key; the daemon passes the validated one (defaults filled), tests may leave keys out. */
export type NotificationsConfig = NonNullable<ConfigInput['notifications']>

/** The first line of a secret file, trimmed; WGPMP_CONFIG_INVALID if unreadable or empty. */
export async function readSecret(key: string, path: string): Promise<string> {
  let text
  try {
    text = await readFile(path, 'utf8')
  } catch (e) {
    throw new WgpmpError('WGPMP_CONFIG_INVALID', `notifications: ${key} ${path}: cannot read (${(e as Error).message})`, { cause: e })
  }
  const s = (text.split('\n')[0] ?? '').trim()
  if (!s) throw new WgpmpError('WGPMP_CONFIG_INVALID', `notifications: ${key} ${path}: empty`)
  return s
}

/** One Channel per configured destination, secrets read from their files. Rejects on an unreadable secret. */
export async function buildChannels(n: NotificationsConfig, sleep: (ms: number) => Promise<void>): Promise<Channel[]> {
  const out: Channel[] = []
  for (const [i, w] of (n.webhooks ?? []).entries()) {
    out.push(
      webhookChannel({
        name: `webhook-${i + 1}`,
        url: w.url,
        secret: w.secret_file ? await readSecret('secret_file', w.secret_file) : null,
        timeoutMs: (w.timeout_seconds ?? 10) * 1000,
        sleep,
      }),
    )
  }
  for (const [i, t] of (n.ntfy ?? []).entries()) {
    out.push(
      ntfyChannel({
        name: `ntfy-${i + 1}`,
        url: t.url,
        token: t.token_file ? await readSecret('token_file', t.token_file) : null,
        timeoutMs: (t.timeout_seconds ?? 10) * 1000,
        sleep,
      }),
    )
  }
  if (n.email) {
    const e = n.email
    out.push(
      emailChannel({
        name: 'email',
        smtpUrl: e.smtp_url,
        from: e.from,
        to: e.to,
        password: e.password_file ? await readSecret('password_file', e.password_file) : null,
      }),
    )
  }
  for (const [i, argv] of (n.commands ?? []).entries()) {
    out.push(commandChannel({ name: `command-${i + 1}`, argv, timeoutMs: (n.command_timeout_seconds ?? 10) * 1000 }))
  }
  return out
}

export interface NotificationsDeps {
  clock: Clock
  log: Logger
  count?: ((channel: string, outcome: Outcome, events: number) => void) | undefined
}

/** The daemon's dispatcher (no channels: it queues nothing). */
export async function startNotifications(n: NotificationsConfig, d: NotificationsDeps): Promise<Dispatcher> {
  const sleep = (ms: number): Promise<void> => new Promise((r) => d.clock.setTimer(ms, r))
  const channels = await buildChannels(n, sleep)
  if (channels.length > 0) d.log.info({ channels: channels.map((c) => `${c.name} ${c.target}`) }, 'notifications on')
  return new Dispatcher({
    channels,
    clock: d.clock,
    log: d.log,
    queueSize: n.queue_size,
    coalesceMs: n.coalesce_ms,
    ratePerMinute: n.rate_limit_per_minute,
    count: d.count,
  })
}

/** The event `wgpmp notify-test` sends. */
export function testEvent(now = Date.now()): WgpmpEvent {
  return {
    type: 'forward.created',
    time: new Date(now).toISOString(),
    client_id: 'test',
    client_name: 'wgpmp notify-test',
    client_address: '10.8.0.2',
    protocol: 'tcp',
    public_address: '198.51.100.1',
    external_port: 43956,
    internal_port: 8080,
    origin: 'nat-pmp',
    lifetime_seconds: 3600,
    test: true,
  }
}

export interface TestResult {
  readonly channel: string
  readonly target: string
  readonly ok: boolean
  readonly ms: number
  readonly error?: string
}

/** Sends one test event straight to every channel (no queue, no rate limit), all at once. */
export async function notifyTest(n: NotificationsConfig): Promise<TestResult[]> {
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
  const channels = await buildChannels(n, sleep)
  const event = testEvent()
  const results = await Promise.all(
    channels.map(async (c): Promise<TestResult> => {
      const t = performance.now()
      try {
        await c.send({ kind: 'event', event })
        return { channel: c.name, target: c.target, ok: true, ms: Math.round(performance.now() - t) }
      } catch (e) {
        return { channel: c.name, target: c.target, ok: false, ms: Math.round(performance.now() - t), error: errText(e) }
      } finally {
        c.close?.()
      }
    }),
  )
  return results
}

/** notify-test's output: one line per channel. */
export function formatTestResults(rs: readonly TestResult[]): string {
  if (rs.length === 0) return 'no notification channels configured (notifications in the config)\n'
  return (
    rs
      .map((r) => `${r.channel.padEnd(11)} ${r.ok ? 'ok    ' : 'FAILED'} ${String(r.ms).padStart(6)} ms  ${r.target}${r.error ? `  ${r.error}` : ''}`)
      .join('\n') + '\n'
  )
}
