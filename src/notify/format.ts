/** How a Message reads in each channel: a JSON payload (webhook, command stdin) and title + text (ntfy, email). */
import type { Message } from './dispatcher.js'
import { describeEvent, type WgpmpEvent } from './events.js'

/** Events listed in one digest (JSON and text); the rest are counted in `omitted`. */
export const DIGEST_LIST = 1000
/** Lines of a digest's text (ntfy, email). */
const DIGEST_TEXT_LINES = 20

export interface DigestPayload {
  readonly type: 'digest'
  readonly time: string
  readonly count: number
  /** Events per type (forward.removed split by reason as "forward.removed:expired"). */
  readonly counts: Record<string, number>
  readonly dropped: number
  readonly events: readonly WgpmpEvent[]
  readonly omitted: number
}

export function countsOf(events: readonly WgpmpEvent[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const e of events) {
    const k = e.type === 'forward.removed' ? `${e.type}:${e.reason ?? 'deleted'}` : e.type
    out[k] = (out[k] ?? 0) + 1
  }
  return out
}

/** The JSON body of a webhook POST and a command's stdin: the event itself, or a digest. */
export function payloadOf(m: Message, now = Date.now()): WgpmpEvent | DigestPayload {
  if (m.kind === 'event') return m.event
  return {
    type: 'digest',
    time: new Date(now).toISOString(),
    count: m.events.length,
    counts: countsOf(m.events),
    dropped: m.dropped,
    events: m.events.slice(0, DIGEST_LIST),
    omitted: Math.max(0, m.events.length - DIGEST_LIST),
  }
}

const COUNT_WORDS: Record<string, [string, string]> = {
  'forward.created': ['forward created', 'forwards created'],
  'client.connected': ['client connected', 'clients connected'],
  'client.disconnected': ['client disconnected', 'clients disconnected'],
}
const countWord = (k: string, n: number): string => {
  const w = COUNT_WORDS[k]
  if (w) return `${n} ${n === 1 ? w[0] : w[1]}`
  const reason = k.split(':')[1] ?? 'deleted'
  return `${n} ${n === 1 ? 'forward' : 'forwards'} removed (${reason})`
}

/** A short title: "forward created: laptop tcp 198.51.100.1:43956" / "1000 forwards created (laptop)". */
export function titleOf(m: Message): string {
  if (m.kind === 'event') {
    const e = m.event
    const who = e.client_name ?? e.client_id
    const prefix = e.test ? 'test: ' : ''
    if (e.type === 'client.connected') return `${prefix}${who} connected`
    if (e.type === 'client.disconnected') return `${prefix}${who} disconnected`
    const verb = e.type === 'forward.created' ? 'forward created' : `forward removed (${e.reason ?? 'deleted'})`
    return `${prefix}${verb}: ${who} ${e.protocol ?? ''}/${e.external_port ?? ''}`
  }
  const counts = countsOf(m.events)
  const clients = [...new Set(m.events.map((e) => e.client_name ?? e.client_id))]
  const whom = clients.length === 1 ? ` (${clients[0]})` : ` (${clients.length} clients)`
  return (
    Object.entries(counts)
      .map(([k, n]) => countWord(k, n))
      .join(', ') + whom
  )
}

/** The body for people: one line per event (a digest: the first 20, then a count). */
export function textOf(m: Message): string {
  if (m.kind === 'event') return describeEvent(m.event)
  const lines = m.events.slice(0, DIGEST_TEXT_LINES).map(describeEvent)
  const more = m.events.length - lines.length
  if (more > 0) lines.push(`... and ${more} more`)
  if (m.dropped > 0) lines.push(`(${m.dropped} more events were dropped: the queue was full)`)
  return lines.join('\n')
}

/** The event type a message stands for (a digest: "digest"). */
export const typeOf = (m: Message): string => (m.kind === 'event' ? m.event.type : 'digest')
