/**
 * The events operators are told about, and the seam they leave the core through. The core (today
 * the services, the expiry and the daemon; later the forwarder) calls the one-line helpers of
 * LeaseEvents (emit.ts); they build an event and hand it to an EventSink, which must return at
 * once and never throw: the dispatcher (dispatcher.ts) queues it per channel. Renewals are not
 * events: a client renewing every 45 s would otherwise page its operator every 45 s.
 */

export type EventType = 'forward.created' | 'forward.removed' | 'client.connected' | 'client.disconnected'

/** Why a forward went away. */
export type RemovalReason = 'deleted' | 'expired' | 'peer-removed' | 'peer-disconnected' | 'flushed' | 'kernel-refused'

export const EVENT_TYPES: readonly EventType[] = ['forward.created', 'forward.removed', 'client.connected', 'client.disconnected']
export const REMOVAL_REASONS: readonly RemovalReason[] = ['deleted', 'expired', 'peer-removed', 'peer-disconnected', 'flushed', 'kernel-refused']

/**
 * One event, flat (so that a command hook gets it as WGPMP_* variables one to one). Forward fields
 * are null on client events; `reason` is set on forward.removed only.
 */
export interface WgpmpEvent {
  readonly type: EventType
  /** ISO 8601 wall time. */
  readonly time: string
  readonly client_id: string
  readonly client_name: string | null
  /** The client's tunnel address (the forward's target address). */
  readonly client_address: string | null
  readonly protocol: 'tcp' | 'udp' | null
  /** The address the internet reaches the forward at (public_address_v4, or the IPv6 one). */
  readonly public_address: string | null
  readonly external_port: number | null
  readonly internal_port: number | null
  readonly origin: 'nat-pmp' | 'pcp' | 'static' | 'upnp' | null
  /** Granted lifetime in seconds; null for static forwards and client events. */
  readonly lifetime_seconds: number | null
  readonly reason?: RemovalReason
  /** Set on the event `wgpmp notify-test` sends. */
  readonly test?: true
}

/** Where events go. emit returns at once and never throws (it queues; delivery is asynchronous). */
export interface EventSink {
  emit(e: WgpmpEvent): void
}

/** Drops everything (notifications off, tests). */
export const nullSink: EventSink = { emit() {} }

/** "198.51.100.1:43956" / "[2001:db8::1]:43956": how the internet reaches a forward. */
export function publicEndpoint(e: Pick<WgpmpEvent, 'public_address' | 'external_port'>): string | null {
  if (e.public_address === null || e.external_port === null) return null
  return e.public_address.includes(':') ? `[${e.public_address}]:${e.external_port}` : `${e.public_address}:${e.external_port}`
}

/** One line for people: "forward created: laptop (10.8.0.2) tcp 198.51.100.1:43956 -> 10.8.0.2:8080, NAT-PMP, 3600 s". */
export function describeEvent(e: WgpmpEvent): string {
  const who = `${e.client_name ?? e.client_id}${e.client_address ? ` (${e.client_address})` : ''}`
  if (e.type === 'client.connected' || e.type === 'client.disconnected') return `client ${e.type === 'client.connected' ? 'connected' : 'disconnected'}: ${who}`
  const origin = e.origin === 'nat-pmp' ? 'NAT-PMP' : e.origin === 'pcp' ? 'PCP' : e.origin === 'upnp' ? 'UPnP' : 'static'
  const life = e.lifetime_seconds === null ? '' : `, ${e.lifetime_seconds} s`
  const what = e.type === 'forward.created' ? 'forward created' : `forward removed (${e.reason ?? 'deleted'})`
  return `${what}: ${who} ${e.protocol ?? ''} ${publicEndpoint(e) ?? '?'} -> ${e.client_address ?? '?'}:${e.internal_port ?? '?'}, ${origin}${life}`
}
