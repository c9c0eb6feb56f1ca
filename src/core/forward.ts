/**
 * The domain types every layer shares: a forward (what the kernel holds), a change to one, and
 * the origins a lease can have. Imports nothing.
 */

export type Protocol = 'tcp' | 'udp'

/**
 * One forward: public-address:externalPort/protocol reaches internalAddress:internalPort. The
 * family follows internalAddress (IPv4 text, or IPv6 text with ':'): an IPv6 forward is a DNAT of
 * the public IPv6 address, or, with `pinhole`, no DNAT at all but an accept for a client whose
 * own address is global (then externalPort === internalPort).
 */
export interface Forward {
  readonly protocol: Protocol
  readonly externalPort: number
  readonly internalAddress: string
  readonly internalPort: number
  readonly pinhole?: boolean
}

export const isV6 = (address: string): boolean => address.includes(':')

export type ForwardChange = { readonly op: 'add'; readonly forward: Forward } | { readonly op: 'delete'; readonly forward: Forward }

/**
 * What identifies a forward in the kernel: (protocol, external port) per family of the public
 * address ("tcp/8080" for IPv4, "v6/tcp/8080"), or the client's own address for a pinhole.
 */
export const forwardKey = (f: { protocol: Protocol; externalPort: number; internalAddress?: string; pinhole?: boolean }): string =>
  f.pinhole === true
    ? `pin/${f.internalAddress ?? ''}/${f.protocol}/${f.externalPort}`
    : f.internalAddress !== undefined && isV6(f.internalAddress)
      ? `v6/${f.protocol}/${f.externalPort}`
      : `${f.protocol}/${f.externalPort}`

const rank = (f: Forward): number => (f.pinhole === true ? 2 : isV6(f.internalAddress) ? 1 : 0)

/** IPv4 forwards, then IPv6 ones, then pinholes; each by protocol, then external port. */
export const compareForwards = (a: Forward, b: Forward): number =>
  rank(a) !== rank(b)
    ? rank(a) - rank(b)
    : a.protocol !== b.protocol
      ? a.protocol < b.protocol
        ? -1
        : 1
      : a.externalPort !== b.externalPort
        ? a.externalPort - b.externalPort
        : a.internalAddress < b.internalAddress
          ? -1
          : a.internalAddress > b.internalAddress
            ? 1
            : 0

/**
 * Where a forward came from: a protocol front-end (dynamic: it expires unless renewed) or the
 * operator (static: config or API, never expires). The one list: the state file, metrics and the
 * API take their vocabulary from here, so a new front-end is added in one place.
 */
export const DYNAMIC_ORIGINS = ['nat-pmp', 'pcp', 'upnp'] as const
export const ORIGINS = [...DYNAMIC_ORIGINS, 'static'] as const
export type Origin = (typeof ORIGINS)[number]
/** The origins of leases that expire: every front-end's. */
export type DynamicOrigin = (typeof DYNAMIC_ORIGINS)[number]
/** A lease's origin as the state file records it; a static forward is never a lease record. */
export const dynamicOrigin = (o: Origin): DynamicOrigin => {
  if (o === 'static') throw new RangeError('a static forward is not a lease record')
  return o
}
/** A forward the lease table holds: dynamic (it expires) or static (lifetime 0, never expires). */
export interface Lease {
  readonly id: number
  readonly client: string
  readonly protocol: Protocol
  /** The internal port the client asked for; 0 for a symmetric mapping. */
  readonly internalPort: number
  readonly externalPort: number
  /** Where the forward points: internalPort, or externalPort for a symmetric mapping. */
  readonly targetPort: number
  /** A client with a global IPv6 address: its own port is opened, nothing is translated. */
  readonly pinhole: boolean
  origin: Origin
  /** Client-controlled text a front-end may keep with the lease (UPnP's NewPortMappingDescription). */
  description?: string
  /** PCP mapping nonce (hex), once a PCP client has used this mapping (RFC 6887 §11.3). */
  nonce?: string
  /** Granted lifetime in seconds (after clamping); 0 for a static forward. */
  lifetimeSeconds: number
  /** Clock ms. */
  readonly createdAt: number
  /** Clock ms; Infinity for a static forward. */
  expiresAt: number
}

export const toForward = (l: Lease): Forward => ({
  protocol: l.protocol,
  externalPort: l.externalPort,
  internalAddress: l.client,
  internalPort: l.targetPort,
  ...(l.pinhole ? { pinhole: true } : {}),
})
