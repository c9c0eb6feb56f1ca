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

export interface WebhookOptions {
  name: string
  url: string
  /** HMAC key (from secret_file), or null: unsigned. */
  secret: string | null
  /** Per attempt: headers and body each (default 10 s). */
  timeoutMs?: number
  /** Attempts after the first (default 3). */
  retries?: number
  /** First backoff (default 1 s), doubling. */
  backoffMs?: number
  sleep: (ms: number) => Promise<void>
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

export function webhookChannel(o: WebhookOptions): Channel {
  const timeout = o.timeoutMs ?? 10_000
  const retries = o.retries ?? 3
  const backoff = o.backoffMs ?? 1000
  return {
    name: o.name,
    kind: 'webhook',
    target: safeUrl(o.url),
    async send(m: Message) {
      const body = JSON.stringify(payloadOf(m))
      const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'wgpmp', 'x-wgpmp-event': typeOf(m) }
      if (o.secret !== null) headers[SIGNATURE_HEADER] = sign(o.secret, body)
      let last: unknown = null
      for (let attempt = 0; attempt <= retries; attempt++) {
        if (attempt > 0) await o.sleep(backoff * 2 ** (attempt - 1))
        try {
          const r = await request(o.url, { method: 'POST', body, headers, headersTimeout: timeout, bodyTimeout: timeout })
          await r.body.dump().catch(() => {})
          if (r.statusCode >= 200 && r.statusCode < 300) return
          const err = new Error(`HTTP ${r.statusCode}`)
          if (r.statusCode !== 408 && r.statusCode !== 429 && r.statusCode < 500) throw new PermanentError(err.message)
          last = err
        } catch (e) {
          if (e instanceof PermanentError) throw e
          last = e
        }
      }
      throw new Error(`gave up after ${retries + 1} attempts: ${last instanceof Error ? last.message : String(last)}`)
    },
  }
}
