/** ForwardDriver: the one interface between lease state and the kernel (nft, iptables, memory). */

export type Protocol = 'tcp' | 'udp'

/** One forward: public-address:externalPort/protocol reaches internalAddress:internalPort. */
export interface Forward {
  readonly protocol: Protocol
  readonly externalPort: number
  readonly internalAddress: string
  readonly internalPort: number
}

export type ForwardChange =
  | { readonly op: 'add'; readonly forward: Forward }
  | { readonly op: 'delete'; readonly forward: Forward }

export interface BaseParams {
  /** IPv4 address(es) forwards are for; DNAT applies only to traffic addressed to these. */
  readonly publicV4: readonly string[]
  /** WireGuard interface name(s): NAT-PMP is answered only on these. */
  readonly wgInterfaces: readonly string[]
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

export const forwardKey = (f: { protocol: Protocol; externalPort: number }): string => `${f.protocol}/${f.externalPort}`

export const compareForwards = (a: Forward, b: Forward): number =>
  a.protocol === b.protocol ? a.externalPort - b.externalPort : a.protocol < b.protocol ? -1 : 1
