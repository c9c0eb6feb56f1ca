/**
 * startDaemon: the composition root. It builds every component in order, each from the ones
 * before it, and registers its close, so a failed start and a stop both close in reverse order.
 * Policy lives in the components (forwarder/, frontends/, state/, wireguard/), not here.
 */
import { parseHostPort } from './config/schema-api.js'
import type { Config } from './config/schema.js'
import { systemClock, type Clock } from './core/clock.js'
import { systemExec, type Exec } from './core/exec.js'
import { isV6, toForward, type Forward } from './core/forward.js'
import { cidr6Network, isUniqueLocal, parseCidr4, parseCidr6 } from './core/ip.js'
import { Components } from './core/lifecycle.js'
import { GroupCommit } from './drivers/batcher.js'
import type { ForwardDriver } from './drivers/driver.js'
import { createDriver } from './drivers/factory.js'
import { ConntrackFlows, noFlows, type Flows } from './drivers/flows.js'
import { admission } from './forwarder/admission.js'
import { kernelCommit } from './forwarder/commit.js'
import { Forwarder } from './forwarder/forwarder.js'
import { peerPolicy } from './forwarder/peer-policy.js'
import { endLeftoverFlows, restoreLeases } from './forwarder/restore.js'
import { StaticForwards } from './forwarder/statics.js'
import { startFrontends } from './frontends/start.js'
import { publicAddresses, wgListenPort } from './host/addresses.js'
import { HostFirewall } from './host/firewall.js'
import { ListeningPortsCache, readListeningPortsSs, type ListeningPorts } from './host/listening.js'
import { createMetrics } from './http/metrics.js'
import { startHttp } from './http/start.js'
import { LastSeen, probeView } from './http/probe.js'
import { apiDeps, metricSources } from './http/sources.js'
import type { EventSink } from './notify/events.js'
import { LeaseEvents } from './notify/emit.js'
import { startNotifications } from './notify/index.js'
import type { Logger } from './log.js'
import { ExpiryScheduler } from './mappings/expiry.js'
import { parseConfigStaticForwards } from './mappings/static.js'
import { MappingTable } from './mappings/table.js'
import { DurableState } from './state/durable-state.js'
import { PeerSync } from './wireguard/peer-sync.js'
import { clientId, configNames, PeerTracker, WgPeerSource, type PeerSource } from './wireguard/peers.js'
import { PeerNames } from './wireguard/wg-conf.js'
import { isWgKey } from './wireguard/wg-dump.js'

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

const disabled: Daemon = {
  udpAddress: null,
  udpAddressV6: null,
  httpAddress: null,
  table: null,
  driver: null,
  refreshPeers: () => Promise.resolve(),
  flushLeases: () => Promise.resolve(0),
  close: () => Promise.resolve(),
}

export async function startDaemon(config: Readonly<Config>, deps: Partial<Deps> & { log: Logger }): Promise<Daemon> {
  const log = deps.log
  if (!config.port_forward_enabled) {
    log.info('port forwarding is disabled (port_forward_enabled: false); nothing to do')
    return disabled
  }
  const components = new Components()
  const stop = { teardown: config.teardown_on_exit }
  try {
    return await build(config, deps, log, components, stop)
  } catch (err) {
    stop.teardown = true // a half-started daemon leaves nothing in the kernel
    await components.closeAll()
    throw err
  }
}

async function build(
  config: Readonly<Config>,
  deps: Partial<Deps> & { log: Logger },
  log: Logger,
  components: Components,
  stop: { teardown: boolean },
): Promise<Daemon> {
  const clock = deps.clock ?? systemClock
  const exec = deps.exec ?? systemExec
  const wg = parseCidr4(config.wg_address_v4)!
  const wg6 = config.wg_address_v6 === undefined ? null : parseCidr6(config.wg_address_v6)
  const pub = publicAddresses(config, wg6, { v4: deps.publicAddress, v6: deps.publicAddressV6 })
  const reserved = new Set<number>([...config.reserved_ports, ...(deps.reservedPorts ?? (await wgListenPort(exec, config.wg_interface, log)))])
  const apiPort = parseHostPort(config.api_listen)?.port
  if (config.api_token_file && apiPort) reserved.add(apiPort)
  const hostPorts = new ListeningPortsCache({ clock, read: deps.listeningPorts ?? (() => readListeningPortsSs(exec)) })
  const hostErr = await hostPorts.refresh()
  if (hostErr) log.warn({ err: hostErr }, "cannot read the host's listening ports; only configured ports are reserved")
  // Kept fresh off the request path: sock_diag (ss -l, in a child) every 200 ms.
  hostPorts.startBackground(200)
  components.add('host ports', () => hostPorts.stop())

  // --- state: snapshot + journal; every lease change is on disk before its reply ---
  const state = await DurableState.open({ path: config.state_file, clock, log })
  const { saved, epochStart } = state
  components.add('state', () => state.close()) // the journal synced, then the final snapshot: the next start restores the leases

  // --- notifications: channels (secret files) read before the kernel is touched ---
  let metricsRef: ReturnType<typeof createMetrics> | null = null
  const dispatcher = deps.events
    ? null
    : await startNotifications(config.notifications, {
        clock,
        log: log.child({ component: 'notify' }),
        count: (c, o, n) => metricsRef?.countNotification(c, o, n),
      })
  if (dispatcher) components.add('notifications', () => dispatcher.close())

  // --- the kernel ---
  const driver = deps.driver ?? createDriver({ driver: config.port_forward_driver, nftMode: config.nft_mode, exec })
  const flows =
    deps.flows ?? (driver.capabilities.kernel ? new ConntrackFlows({ exec, publicAddress: pub.v4, log: log.child({ component: 'conntrack' }) }) : noFlows)
  components.add('driver', () => driver.close())
  const baseParams = {
    publicV4: [pub.v4],
    publicV6: pub.v6 ? [pub.v6] : [],
    guardedV6: wg6 === null ? [] : config.ipv6_guarded_prefixes.map((p) => cidr6Network(parseCidr6(p)!)),
    wgInterfaces: [config.wg_interface],
    // UPnP's SSDP and HTTP ports are admitted from the WireGuard interface only, as 5351 is.
    ...(config.upnp_enabled
      ? {
          wgOnly: [
            { protocol: 'udp' as const, port: 1900 },
            { protocol: 'tcp' as const, port: config.upnp_http_port },
          ],
        }
      : {}),
  }
  // What the kernel holds from an earlier run (after a crash): ensureBase replaces it, and the
  // connections of forwards that are not restored end with them, as on any delete.
  const previous: readonly Forward[] = await driver.list().catch(() => [])
  await driver.ensureBase(baseParams)
  components.add('forwarding base', async () => {
    if (stop.teardown) {
      await driver.teardown()
      log.info({ forwards: table.size + table.staticCount }, 'forwards removed, table deleted')
    }
  })
  const described = driver.describe()
  log.info({ ...described, publicAddress: pub.v4, publicAddressV6: pub.v6 ?? undefined }, 'forwarding base installed')
  if (described.fallback) log.warn(described, 'driver: a slower mode than asked for runs')

  // --- leases ---
  const table = new MappingTable({
    clock,
    minPort: config.port_forward_min_port,
    maxPort: config.port_forward_max_port,
    minLifetimeSeconds: config.lifetime_min_seconds,
    maxLifetimeSeconds: config.lifetime_max_seconds,
    upnpMaxLifetimeSeconds: config.upnp_permanent_lease_seconds,
    maxPerClient: config.max_forwards_per_client,
    isReserved: (p) => reserved.has(p) || hostPorts.has(p),
    isPinholeClient: (a) => isV6(a) && !isUniqueLocal(a),
    // Every lease change is staged in the journal; the kernel commit waits for it on disk.
    onChange: (op, l, hold) => state.stage(op, l, hold),
    portHoldSeconds: config.port_hold_seconds,
  })
  state.attach(table, (a) => tracker.peerByAddress(a)?.id)

  // --- peers: who may ask ---
  const names = new PeerNames({
    config: configNames(config.clients),
    fixed: deps.wgEasyNames,
    confPath: config.wg_config_file ?? `/etc/wireguard/${config.wg_interface}.conf`,
    log,
  })
  await names.poll()
  const tracker = new PeerTracker({
    clock,
    unixSeconds: () => clock.wall() / 1000,
    disconnectSeconds: config.peer_disconnect_seconds,
    nameOf: (k) => names.nameOf(k),
  })
  const metrics = createMetrics(metricSources({ table, tracker }))
  metricsRef = metrics
  const publicFor = (client: string): string | null => (!isV6(client) ? pub.v4 : isUniqueLocal(client) ? pub.v6 : client)
  // Operator notifications: armed once started (what a start restores or installs is not news).
  const notify = new LeaseEvents({
    sink: deps.events ?? dispatcher!,
    peerAt: (a) => tracker.peerByAddress(a),
    publicAddress: publicFor,
    now: () => clock.wall(),
  })
  const who = (a: string): { clientId?: string | undefined; clientName?: string | null | undefined } => {
    const p = tracker.peerByAddress(a)
    return { clientId: p?.id, clientName: p?.name }
  }
  // Another table's FORWARD drop (ufw, Docker) would drop our forwards: warn, or insert the accept.
  const hostFw = driver.capabilities.kernel
    ? new HostFirewall({
        exec,
        clock,
        log: log.child({ component: 'host-firewall' }),
        wgInterface: config.wg_interface,
        publicInterface: config.public_interface,
        accept: config.host_firewall_accept,
      })
    : null
  if (hostFw) {
    hostFw.registerMetric(metrics.registry)
    components.add('host firewall', () => hostFw.close()) // removes the accept rule host_firewall_accept inserted
    await hostFw.check()
  }

  // --- the forwarder: every change to a forward goes through it ---
  const batcher = new GroupCommit(driver, (size, ms, ok) => {
    metrics.observeBatch(size, ms, ok)
    log.debug({ size, ms, ok }, 'batch')
  })
  components.add('group commit', () => batcher.idle())
  components.add('flows', () => flows.close())
  const commit = kernelCommit({ batcher, durable: () => state.sync(), flows, stateChanged: () => state.changed() })
  const chunk = driver.capabilities.bulkDeleteChunk
  let expiry: ExpiryScheduler | null = null
  const changed = (): void => {
    expiry?.reschedule()
    state.changed()
  }
  let peerSync: PeerSync | null = null
  const isClient = admission({
    wg4: wg,
    wg6,
    known: (a) => tracker.peerByAddress(a) !== undefined,
    refreshIfStale: () => peerSync?.refreshIfStale() ?? Promise.resolve(),
  })
  const forwarder = new Forwarder({
    table,
    commit,
    isClient,
    changed,
    chunk,
    who,
    log: log.child({ component: 'forwarder' }),
    events: {
      created: (l) => notify.created(l, [l]),
      refused: (l) => notify.refused(l, [l]),
      removed: (ls, why) => notify.removed(ls, why === 'peer-address-changed' ? 'peer-removed' : why),
    },
  })
  const exp = new ExpiryScheduler(clock, table, (r) => forwarder.expire(r), log.child({ component: 'expiry' }), chunk)
  expiry = exp
  components.add('expiry', () => exp.stop())
  const statics = new StaticForwards({
    store: state.statics,
    sink: table,
    commit: (ch) => commit(ch).then(() => notify.staticChanges(ch)),
    log: log.child({ component: 'static' }),
    // IPv6 addresses only where IPv6 forwarding is configured.
    addressesOf: (id) => (tracker.peerById(id)?.addresses ?? []).filter((a) => !isV6(a) || pub.v6 !== null),
  })
  const configForwards = parseConfigStaticForwards(config.static_forwards, (k) => (isWgKey(k) ? clientId(k) : k))
  for (const p of [...configForwards.problems, ...statics.setConfigForwards(configForwards.forwards)]) log.warn({ problem: p }, 'static forward skipped')
  const onPeerEvents = peerPolicy({ forwarder, statics, releaseHolds: (a) => table.releaseHolds(a), log })
  const wgPeers = deps.peers ?? new WgPeerSource({ exec, ifname: config.wg_interface })
  const sync = new PeerSync({
    source: {
      refresh: async () => {
        const peers = await wgPeers.refresh()
        if (await names.poll()) for (const p of tracker.renamePeers()) log.info({ client: p.id, clientName: p.name }, 'peer renamed')
        return peers
      },
    },
    tracker,
    clock,
    intervalMs: config.peer_refresh_seconds * 1000,
    log: log.child({ component: 'peers' }),
    onEvents: async (events) => {
      for (const ev of events) notify.peer(ev)
      await onPeerEvents(events)
      exp.reschedule()
    },
  })
  peerSync = sync
  components.add('peer sync', () => sync.stop())
  await sync.refresh() // before the socket opens, so the first request already knows its sender; installs static forwards

  // --- restart: ensureBase replaced what the kernel held, so after this it holds exactly the live set ---
  if (saved) {
    await restoreLeases(saved, { table, clock, commit, peerAt: (a) => tracker.peerByAddress(a), replayed: state.replayed, log })
    exp.reschedule()
  }
  // Compact at start: the replayed journal goes into a fresh snapshot, older generations are deleted.
  await state.flushNow().catch(() => {})
  await endLeftoverFlows(previous, { table, flows, log })

  // --- front-ends: NAT-PMP, PCP, UPnP, all on the forwarder ---
  const lastSeen = new LastSeen()
  const { udp, udp6 } = await startFrontends({
    forwarder,
    clock,
    epochStart,
    publicV4: pub.v4,
    publicV6: pub.v6,
    log,
    components,
    wg: { interface: config.wg_interface, v4: wg.address, v6: wg6?.address ?? null, v4Cidr: config.wg_address_v4, v6Cidr: config.wg_address_v6 },
    pcp: config.pcp_enabled,
    rate: { perSecond: config.rate_limit_per_second, burst: config.rate_limit_burst },
    upnp: { enabled: config.upnp_enabled, httpPort: config.upnp_http_port, leaseCapSeconds: config.upnp_permanent_lease_seconds },
    listen: deps.listen,
    listenV6: deps.listenV6,
    upnpListen: deps.upnpListen,
    count: { natpmp: (op, r) => metrics.countRequest(op, r), pcp: (op, r) => metrics.countPcpRequest(op, r), drop: (why) => metrics.countDrop(why) },
    seen: (from) => lastSeen.note(from, clock.wall()),
    before: () => hostPorts.refreshSoon(), // never waits for the host: a read older than 250 ms is redone in the background
  })

  // --- the HTTP API and page, /metrics ---
  const httpAddress = await startHttp({
    apiListen: config.api_listen,
    tokenFile: config.api_token_file,
    metricsListen: config.metrics_listen,
    log,
    components,
    deps: () => ({
      ...apiDeps({ table, statics, tracker, forwarder, clock, metrics, gateway: wg.address, hostFirewall: hostFw }),
      // what the internet sees, the latest request, and the Test button
      publicAddressOf: (a) => (a === null ? null : publicFor(a)),
      lastRequestOf: (c) => lastSeen.latest(c.addresses),
      testForward: (f) =>
        probeView(f, {
          localV4: wg.address,
          localV6: wg6?.address ?? null,
          hostFirewallBlocks: deps.hostFirewallBlocks ?? (() => hostFw?.current.blocksForwards ?? false),
        }),
    }),
  })
  sync.start()
  hostFw?.start()

  // Someone deleted or flushed our table (`nft flush ruleset`, a firewall reload): rebuild it with every live forward.
  const watch = driver.watchTable({
    clock,
    log: log.child({ component: 'watch' }),
    onLost: (reason) =>
      batcher.exclusive(
        async () => {
          // Read before the first await: the submissions queued behind the rebuild are in it (absorbQueued).
          const all = table.leases().map((l) => ({ op: 'add' as const, forward: toForward(l) }))
          log.warn({ reason }, 'the wgpmp table was deleted or flushed by someone else; rebuilding it')
          metrics.countRebuild(reason)
          await driver.ensureBase(baseParams)
          await driver.apply(all)
          log.info({ forwards: all.length }, 'table rebuilt')
        },
        { absorbQueued: true },
      ),
  })
  if (watch) {
    watch.start()
    components.add('table watch', () => watch.stop())
  }

  if (deps.events || (dispatcher && dispatcher.channels.length > 0)) notify.arm() // no channels: no events built at all

  return {
    udpAddress: udp.address,
    udpAddressV6: udp6?.address ?? null,
    httpAddress,
    table,
    driver,
    refreshPeers: () => sync.refresh(),
    flushLeases: () => forwarder.flush(),
    async close(opts) {
      stop.teardown = opts?.teardown ?? config.teardown_on_exit
      const errors = await components.closeAll((name, ms) => log.warn({ component: name, ms: Math.round(ms) }, 'a component is slow to close'))
      if (errors.length > 0) throw new AggregateError(errors, errors.map((e) => e.message).join('; '))
    },
  }
}
