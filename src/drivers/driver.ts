/** ForwardDriver: the one interface between lease state and the kernel (nft, iptables, memory). */

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

export type ForwardChange =
  | { readonly op: 'add'; readonly forward: Forward }
  | { readonly op: 'delete'; readonly forward: Forward }

export interface BaseParams {
  /** IPv4 address(es) forwards are for; DNAT applies only to traffic addressed to these. */
  readonly publicV4: readonly string[]
  /** IPv6 address(es) IPv6 forwards are for (none: no IPv6 DNAT). */
  readonly publicV6?: readonly string[]
  /** Global IPv6 prefixes of clients that wgpmp firewalls: new inbound connections only through pinholes. */
  readonly guardedV6?: readonly string[]
  /** WireGuard interface name(s): NAT-PMP is answered only on these. */
  readonly wgInterfaces: readonly string[]
  /** More local services answered only from the WireGuard interfaces, like 5351 (UPnP: udp 1900, tcp upnp_http_port). */
  readonly wgOnly?: readonly { readonly protocol: Protocol; readonly port: number }[]
}

export interface ForwardDriver {
  readonly name: 'nft' | 'iptables' | 'memory'
  /**
   * Installs wgpmp's base table/chains/maps, replacing any stale copy of ours atomically.
   * Existing forwards are dropped. Rejects with WgpmpError if the tool is missing or refuses.
   */
  ensureBase(params: BaseParams): Promise<void>
  /**
   * Applies every change or none. Adding a forward whose (protocol, externalPort) exists, or
   * deleting one that does not, rejects (WGPMP_NFT_EXISTS / WGPMP_NFT_NOT_FOUND or the driver's
   * equivalent) and changes nothing. An empty list is a no-op.
   */
  apply(changes: readonly ForwardChange[]): Promise<void>
  /** The forwards the kernel holds now, sorted by protocol then external port. */
  list(): Promise<readonly Forward[]>
  /** Removes everything wgpmp installed; succeeds if nothing is there. */
  teardown(): Promise<void>
}

/**
 * What identifies a forward in the kernel: (protocol, external port) per family of the public
 * address ("tcp/8080" for IPv4, "v6/tcp/8080"), or the client's own address for a pinhole.
 */
export const forwardKey = (f: { protocol: Protocol; externalPort: number; internalAddress?: string; pinhole?: boolean }): string =>
  f.pinhole === true
    ? `pin/${f.internalAddress ?? ''}/${f.protocol}/${f.externalPort}`
    : f.internalAddress !== undefined && isV6(f.internalAddress) ? `v6/${f.protocol}/${f.externalPort}` : `${f.protocol}/${f.externalPort}`

const rank = (f: Forward): number => (f.pinhole === true ? 2 : isV6(f.internalAddress) ? 1 : 0)

/** IPv4 forwards, then IPv6 ones, then pinholes; each by protocol, then external port. */
export const compareForwards = (a: Forward, b: Forward): number =>
  rank(a) !== rank(b) ? rank(a) - rank(b)
  : a.protocol !== b.protocol ? (a.protocol < b.protocol ? -1 : 1)
  : a.externalPort !== b.externalPort ? a.externalPort - b.externalPort
  : a.internalAddress < b.internalAddress ? -1 : a.internalAddress > b.internalAddress ? 1 : 0
