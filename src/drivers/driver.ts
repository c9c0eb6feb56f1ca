/**
 * ForwardDriver: the one interface between lease state and the kernel (nft, iptables, memory).
 * What differs between drivers is declared here (capabilities, describe, watchTable), so nothing
 * outside src/drivers/ needs to know which driver runs; drivers are made by createDriver
 * (factory.ts).
 */
import type { Clock } from '../core/clock.js'
import type { Forward, ForwardChange, Protocol } from '../core/forward.js'
import type { Logger } from '../log.js'

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

export type DriverName = 'nft' | 'iptables' | 'memory'

/** What a driver can do; constant for its lifetime. */
export interface DriverCapabilities {
  /** IPv6 forwards (DNAT to a unique-local client) and pinholes (a global client, no DNAT). */
  readonly ipv6: boolean
  /** watchTable() returns a watcher: the driver can notice its table being deleted or flushed by someone else. */
  readonly watch: boolean
  /** Leases per batch in a large removal (delete-all, a peer's withdrawal, a mass expiry). */
  readonly bulkDeleteChunk: number
  /**
   * It changes the kernel's tables: connection tracking of deleted forwards is worth flushing,
   * and forwards left by an earlier run are worth reading back (false only for the memory driver).
   */
  readonly kernel: boolean
}

/** What the daemon logs at start: which driver, and for nft which mode runs and why not the one asked for. */
export interface DriverDescription {
  readonly driver: DriverName
  /** The path batches take now (nft: library, session or spawn). */
  readonly mode?: string
  /** Set when a slower mode than asked for runs: the one asked for. */
  readonly asked?: string
  /** Set when a slower mode than asked for runs: why. */
  readonly fallback?: string
}

/** missing: the table (or its probe chain) is gone; flushed: its probe chain has no rule left. */
export type LostReason = 'flushed' | 'missing'

export interface WatchHooks {
  readonly clock: Clock
  readonly log: Logger
  /**
   * Called when the table is gone or emptied: rebuild it (ensureBase, then every live forward).
   * Awaited before the watcher checks again; errors are logged and retried at the next check.
   */
  readonly onLost: (reason: LostReason) => void | Promise<void>
  /** Periodic check (ms); the driver's default when absent. */
  readonly intervalMs?: number
}

/** Watches the installed table. start() after ensureBase; stop() before teardown (which deletes the table). */
export interface TableWatcher {
  start(): void
  stop(): Promise<void>
}

export interface ForwardDriver {
  readonly name: DriverName
  readonly capabilities: DriverCapabilities
  /** What to log at start; call after ensureBase (a fallback is known only then). */
  describe(): DriverDescription
  /**
   * Installs wgpmp's base table/chains/maps, replacing any stale copy of ours atomically.
   * Existing forwards are dropped. Rejects with WgpmpError if the tool is missing or refuses.
   */
  ensureBase(params: BaseParams): Promise<void>
  /**
   * Applies every change or none. Adding a forward whose key (forwardKey) exists, or deleting one
   * that does not, rejects WGPMP_FORWARD_EXISTS / WGPMP_FORWARD_MISSING (also when the base is not
   * installed: nft cannot tell a missing map from a missing element); a forward the driver cannot
   * carry (IPv6 without capabilities.ipv6) WGPMP_FORWARD_INVALID; anything else the kernel refuses
   * WGPMP_KERNEL_REFUSED. Nothing changes on a rejection. An empty list is a no-op.
   */
  apply(changes: readonly ForwardChange[]): Promise<void>
  /** The forwards the kernel holds now, sorted by protocol then external port. */
  list(): Promise<readonly Forward[]>
  /** Removes everything wgpmp installed; succeeds if nothing is there. */
  teardown(): Promise<void>
  /**
   * A watcher of the installed table, not yet started (capabilities.watch), or null for a driver
   * that cannot watch. Each call makes a new one.
   */
  watchTable(hooks: WatchHooks): TableWatcher | null
  /**
   * Releases what the driver holds (the nft session process, the libnftables context); a no-op
   * where there is nothing. Call last, after teardown if any. A later call may start them again.
   */
  close(): void
}
