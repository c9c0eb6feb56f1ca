/** ForwardDriver: the one interface between lease state and the kernel (nft, iptables, memory). */
import type { Forward, ForwardChange } from '../core/forward.js'

export interface BaseParams {
  /** IPv4 address(es) forwards are for; DNAT applies only to traffic addressed to these. */
  readonly publicV4: readonly string[]
  /** IPv6 address(es) IPv6 forwards are for (none: no IPv6 DNAT). */
  readonly publicV6?: readonly string[]
  /** Global IPv6 prefixes of clients that wgpmp firewalls: new inbound connections only through pinholes. */
  readonly guardedV6?: readonly string[]
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
   * deleting one that does not, rejects (WGPMP_FORWARD_EXISTS / WGPMP_FORWARD_MISSING or the driver's
   * equivalent) and changes nothing. An empty list is a no-op.
   */
  apply(changes: readonly ForwardChange[]): Promise<void>
  /** The forwards the kernel holds now, sorted by protocol then external port. */
  list(): Promise<readonly Forward[]>
  /** Removes everything wgpmp installed; succeeds if nothing is there. */
  teardown(): Promise<void>
}

