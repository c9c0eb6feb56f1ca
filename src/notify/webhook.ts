/**
 * Webhook channel: one JSON POST per message (undici), signed when a secret is set:
 * X-Wgpmp-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>. A 2xx is delivered; a
 * network error, a timeout, 408, 429 or 5xx is retried with doubling backoff; any other status
 * gives up at once (retrying a 400 or 404 changes nothing).
 */
import { createHmac } from 'node:crypto'
import { request } from 'undici'
import type { Channel, Message } from './dispatcher.js'
import { payloadOf, typeOf } from './format.js'

export const SIGNATURE_HEADER = 'x-wgpmp-signature'

/** How an HTTP channel (webhook, ntfy) retries. */
export interface RetryOptions {
  /** Per attempt: headers and body each (default 10 s). */
  timeoutMs?: number
  /** Attempts after the first (default 3). */
  retries?: number
  /** First backoff (default 1 s), doubling. */
  backoffMs?: number
  sleep: (ms: number) => Promise<void>
}

export interface WebhookOptions extends RetryOptions {
  name: string
  url: string
  /** HMAC key (from secret_file), or null: unsigned. */
  secret: string | null
}

export const sign = (secret: string, body: string): string => 'sha256=' + createHmac('sha256', secret).update(body, 'utf8').digest('hex')

class PermanentError extends Error {}

/** A URL without user:password, for logs and `notify-test`. */
export function safeUrl(u: string): string {
  try {
    const x = new URL(u)
    return `${x.protocol}//${x.host}${x.pathname}${x.search ? '?…' : ''}`
  } catch {
    return '(invalid url)'
  }
}

/**
 * POSTs body, retrying timeouts, 408, 429 and 5xx with exponential backoff (retries + 1 attempts);
 * null on a 2xx, else the last error and whether retrying could not help (another 4xx).
 */
export async function postWithRetries(
  url: string,
  body: string,
  headers: Record<string, string>,
  o: RetryOptions,
): Promise<{ error: unknown; permanent: boolean; attempts: number } | null> {
  const timeout = o.timeoutMs ?? 10_000
  const retries = o.retries ?? 3
  const backoff = o.backoffMs ?? 1000
  let last: unknown = null
  for (let attempt = 0; attempt <= retries; attempt++) {
    if (attempt > 0) await o.sleep(backoff * 2 ** (attempt - 1))
    try {
      const r = await request(url, { method: 'POST', body, headers, headersTimeout: timeout, bodyTimeout: timeout })
      await r.body.dump().catch(() => {})
      if (r.statusCode >= 200 && r.statusCode < 300) return null
      last = new Error(`HTTP ${r.statusCode}`)
      if (r.statusCode !== 408 && r.statusCode !== 429 && r.statusCode < 500) return { error: last, permanent: true, attempts: attempt + 1 }
    } catch (e) {
      last = e
    }
  }
  return { error: last, permanent: false, attempts: retries + 1 }
}

export const errText = (e: unknown): string => (e instanceof Error ? e.message : String(e))

export function webhookChannel(o: WebhookOptions): Channel {
  return {
    name: o.name,
    kind: 'webhook',
    target: safeUrl(o.url),
    async send(m: Message) {
      const body = JSON.stringify(payloadOf(m))
      const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'wgpmp', 'x-wgpmp-event': typeOf(m) }
      if (o.secret !== null) headers[SIGNATURE_HEADER] = sign(o.secret, body)
      const r = await postWithRetries(o.url, body, headers, o)
      if (r === null) return
      throw r.permanent ? new PermanentError(errText(r.error)) : new Error(`gave up after ${r.attempts} attempts: ${errText(r.error)}`)
    },
  }
}
