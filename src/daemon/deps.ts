/** What the daemon can be given (tests, the bench) and what it hands back; the context every component builder gets. */
import type { Config } from '../config/schema.js'
import type { Clock } from '../core/clock.js'
import type { Exec } from '../core/exec.js'
import type { Components } from '../core/lifecycle.js'
import type { ForwardDriver } from '../drivers/driver.js'
import type { Flows } from '../drivers/flows.js'
import type { ListeningPorts } from '../host/listening.js'
import type { Logger } from '../log.js'
import type { MappingTable } from '../mappings/table.js'
import type { EventSink } from '../notify/events.js'
import type { PeerSource } from '../wireguard/peers.js'

export interface Deps {
  /** Monotonic and wall time. */
  clock: Clock
  exec: Exec
  driver: ForwardDriver
  /**
   * What happens to the connections of deleted forwards (default: conntrack ends them). A test
   * without a kernel passes `noFlows`; injecting a driver does not change it.
   */
  flows: Flows
  log: Logger
  /** Where WireGuard peers come from (default: `wg show <wg_interface> dump`). */
  peers: PeerSource
  /** Where to bind NAT-PMP (default: the address of wg_address_v4, port 5351). Tests use 127.0.0.1:0. */
  listen: { host: string; port: number }
  /** Overrides the public address lookup (tests). */
  publicAddress: string
  /** Overrides the public IPv6 address lookup (tests). */
  publicAddressV6: string
  /** Where to bind PCP over IPv6 (default: the address of wg_address_v6, port 5351). */
  listenV6: { host: string; port: number }
  /** UPnP's HTTP and SSDP ports on `listen.host` (tests); with `listen` given and this absent, UPnP stays off. */
  upnpListen: { httpPort: number; ssdpPort: number }
  /** Ports never granted, found at start (default: the WireGuard listen port from `wg`). */
  reservedPorts: readonly number[]
  /** Display names from a wg-easy client list (default: read /etc/wireguard/wg0.json if present). */
  wgEasyNames: ReadonlyMap<string, string>
  /** The host's listening ports, never granted (default: /proc/net of the daemon's namespace). */
  listeningPorts: () => Promise<ListeningPorts>
  /** Where forward and client events go (default: the channels of config.notifications). */
  events: EventSink
  /** Is outside traffic to forwards dropped by the host? (default: the host firewall check) The page's Test says so. */
  hostFirewallBlocks: () => boolean
}

export interface Daemon {
  readonly udpAddress: { address: string; port: number } | null
  /** The IPv6 socket (PCP), when wg_address_v6 is configured. */
  readonly udpAddressV6: { address: string; port: number } | null
  readonly httpAddress: { address: string; port: number } | null
  readonly table: MappingTable | null
  readonly driver: ForwardDriver | null
  /** Reads the peers now and applies what changed (tests; the daemon also does it on a timer). */
  refreshPeers(): Promise<void>
  /** Removes every NAT-PMP/PCP lease (the operator's flush); static forwards stay. Resolves with how many. */
  flushLeases(): Promise<number>
  /** Stops serving; with teardown (default: config.teardown_on_exit) removes every forward and the table. */
  close(opts?: { teardown?: boolean }): Promise<void>
}

/** What every component builder gets: the config, the injected parts, and where to register its close. */
export interface Context {
  readonly config: Readonly<Config>
  readonly deps: Partial<Deps>
  readonly clock: Clock
  readonly exec: Exec
  readonly log: Logger
  readonly components: Components
}
