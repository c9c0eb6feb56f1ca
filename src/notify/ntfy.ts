/**
 * ntfy channel: a POST to the topic URL in ntfy's own format (https://docs.ntfy.sh/publish/): the
 * text as body, Title / Tags / Priority headers, and `Authorization: Bearer <token>` when a
 * token_file is set. Non-ASCII titles go RFC 2047-encoded, which ntfy decodes.
 */
import type { Channel, Message } from './dispatcher.js'
import { textOf, titleOf } from './format.js'
import { errText, postWithRetries, safeUrl, type RetryOptions } from './webhook.js'

export interface NtfyOptions extends RetryOptions {
  name: string
  url: string
  /** Access token (from token_file), or null. */
  token: string | null
}

/** ntfy tags (emoji short codes) and priority (1 min .. 5 max) for a message. */
export function ntfyLook(m: Message): { tags: string[]; priority: number } {
  if (m.kind === 'digest') return { tags: ['wgpmp', 'package'], priority: m.events.some((e) => e.reason === 'kernel-refused') ? 4 : 3 }
  const e = m.event
  if (e.type === 'forward.created') return { tags: ['wgpmp', 'heavy_plus_sign'], priority: 3 }
  if (e.type === 'forward.removed')
    return e.reason === 'kernel-refused' ? { tags: ['wgpmp', 'warning'], priority: 4 } : { tags: ['wgpmp', 'heavy_minus_sign'], priority: 3 }
  return { tags: ['wgpmp', e.type === 'client.connected' ? 'green_circle' : 'red_circle'], priority: 2 }
}

/** A header value: as is if printable ASCII, else RFC 2047 base64. */
export const headerValue = (s: string): string => (/^[\x20-\x7e]*$/.test(s) ? s : `=?UTF-8?B?${Buffer.from(s, 'utf8').toString('base64')}?=`)

export function ntfyChannel(o: NtfyOptions): Channel {
  return {
    name: o.name,
    kind: 'ntfy',
    target: safeUrl(o.url),
    async send(m: Message) {
      const look = ntfyLook(m)
      const headers: Record<string, string> = {
        'content-type': 'text/plain; charset=utf-8',
        title: headerValue(`wgpmp: ${titleOf(m)}`),
        tags: look.tags.join(','),
        priority: String(look.priority),
      }
      if (o.token !== null) headers.authorization = `Bearer ${o.token}`
      const body = textOf(m)
      const r = await postWithRetries(o.url, body, headers, o)
      if (r === null) return
      throw new Error(`ntfy: ${errText(r.error)}`)
    },
  }
}
