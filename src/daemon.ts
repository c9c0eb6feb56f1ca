/** startDaemon: wires config, peers, lease table, driver, expiry, the UDP socket and the API. The only module that knows them all. */
import { networkInterfaces } from 'node:os'
import { parseHostPort } from './config/schema-api.js'
import type { Config } from './config/schema.js'
import { forwardKey, isV6, type Forward, type ForwardChange, type ForwardDriver, type Protocol } from './drivers/driver.js'
import { GroupCommit } from './drivers/batcher.js'
import { NftDriver } from './drivers/nft.js'
import { IptablesDriver } from './drivers/iptables.js'
import { WgpmpError } from './errors.js'
import { systemExec, type Exec } from './exec.js'
import { leaseView, loadApiToken, staticView, startApi, clientView, type ApiServer } from './http/api.js'
import { createMetrics } from './http/metrics.js'
import { canonicalAddress, cidr6Network, inCidr4, isGlobalV6, isUniqueLocal, parseCidr4, parseCidr6, parseIPv4 } from './ip.js'
import type { Logger } from './log.js'
import { systemClock, type Clock } from './mappings/clock.js'
import { flushConntrack } from './drivers/conntrack.js'
import { TableWatch } from './drivers/watch.js'
import { ListeningPortsCache, readListeningPorts, type ListeningPorts } from './host/listening.js'
import { ExpiryScheduler } from './mappings/expiry.js'
import { RateLimiter } from './mappings/ratelimit.js'
import { parseConfigStaticForwards, StaticForwards, StaticForwardStore } from './mappings/static.js'
import { MappingTable, toForward, type Origin } from './mappings/table.js'
import { epochFromUnixMs, loadState, renderStateChunks, restorable, snapshot, StateStore } from './state/store.js'
import { NATPMP_PORT, NATPMP_VERSION } from './protocol/constants.js'
import { NatPmpService, removeInChunks, type ServiceDeps } from './server/natpmp-service.js'
import { PcpService } from './server/pcp-service.js'
import { startUdpServer } from './server/udp.js'
import { PeerSync } from './wireguard/peer-sync.js'
import { clientId, configNames, PeerTracker, readWgEasyNames, WgPeerSource, type PeerEvent, type PeerSource } from './wireguard/peers.js'
import { isWgKey } from './wireguard/wg-dump.js'
import type { EventSink } from './notify/events.js'
import { LeaseEvents } from './notify/emit.js'
import { startNotifications } from './notify/index.js'
import { LastSeen, probeView } from './http/probe.js'
import { startMetricsListener, type MetricsListener } from './http/metrics-listen.js'

export interface Deps {
  clock: Clock
  exec: Exec
  driver: ForwardDriver
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
  /** Ports never granted, found at start (default: the WireGuard listen port from `wg`). */
  reservedPorts: readonly number[]
  /** Display names from a wg-easy client list (default: read /etc/wireguard/wg0.json if present). */
  wgEasyNames: ReadonlyMap<string, string>
  /** The host's listening ports, never granted (default: /proc/net of the daemon's namespace). */
  listeningPorts: () => Promise<ListeningPorts>
  /** Wall clock, unix ms (state file times). Default Date.now. */
  now: () => number
  /** Where forward and client events go (default: the channels of config.notifications). Issue 13. */
  events: EventSink
  /** Another component's host-firewall check: true when outside traffic to forwards is dropped (the page's Test says so). */
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

/** The first IPv4 address of an interface, or null. */
export function interfaceV4(name: string): string | null {
  return networkInterfaces()[name]?.find((a) => a.family === 'IPv4')?.address ?? null
}

/** The first global IPv6 address of an interface, or null. */
export function interfaceV6(name: string): string | null {
  return networkInterfaces()[name]?.find((a) => a.family === 'IPv6' && isGlobalV6(a.address))?.address ?? null
}

async function wgListenPort(exec: Exec, ifname: string, log: Logger): Promise<number[]> {
  try {
    const r = await exec('wg', ['show', ifname, 'listen-port'])
    const p = Number(r.stdout.trim())
    if (r.exitCode === 0 && Number.isInteger(p) && p > 0) return [p]
    log.warn({ ifname, stderr: r.stderr }, 'cannot read the WireGuard listen port; it is not reserved')
  } catch (err) {
    log.warn({ err, ifname }, 'cannot run wg; the WireGuard listen port is not reserved')
  }
  return []
}

/** Leases per batch in a large removal (removeInChunks) and per expiry round. */
export const DELETE_CHUNK = 250
/**
 * For the iptables-compat driver a large removal is one chain rebuild (O(rules)) whatever its size,
 * so chunks would multiply that cost: it removes in chunks this large instead.
 */
const IPTABLES_DELETE_CHUNK = 20_000
/**
 * Conntrack entries of deleted forwards are removed this long after the delete, for all deletes
 * of that window at once: each conntrack run dumps the whole conntrack table, which on a busy
 * server costs milliseconds of CPU, so one per delete slowed every other request (bench/RESULTS.md).
 */
const FLOW_FLUSH_DELAY_MS = 250

const disabled: Daemon = {
  udpAddress: null, udpAddressV6: null, httpAddress: null, table: null, driver: null,
  refreshPeers: () => Promise.resolve(), flushLeases: () => Promise.resolve(0), close: () => Promise.resolve(),
}

export async function startDaemon(config: Readonly<Config>, deps: Partial<Deps> & { log: Logger }): Promise<Daemon> {
  const log = deps.log
  if (!config.port_forward_enabled) {
    log.info('port forwarding is disabled (port_forward_enabled: false); nothing to do')
    return disabled
  }
  const clock = deps.clock ?? systemClock
  const exec = deps.exec ?? systemExec
  const now = deps.now ?? Date.now
  /** Only a daemon with a real driver touches conntrack; tests with the memory driver never do. */
  const realKernel = deps.driver === undefined
  const wg = parseCidr4(config.wg_address_v4)!
  const publicAddress = deps.publicAddress ?? config.public_address_v4 ?? interfaceV4(config.public_interface)
  if (!publicAddress) {
    throw new WgpmpError('WGPMP_ADDRESS_UNKNOWN', `public_interface ${config.public_interface} has no IPv4 address; set public_address_v4`)
  }
  const wg6 = config.wg_address_v6 === undefined ? null : parseCidr6(config.wg_address_v6)
  const publicV6Raw = wg6 === null ? null : deps.publicAddressV6 ?? config.public_address_v6 ?? interfaceV6(config.public_interface)
  if (wg6 !== null && !publicV6Raw) {
    throw new WgpmpError('WGPMP_ADDRESS_UNKNOWN', `public_interface ${config.public_interface} has no global IPv6 address; set public_address_v6 (or remove wg_address_v6)`)
  }
  const publicV6 = publicV6Raw ? canonicalAddress(publicV6Raw) : null
  const reserved = new Set<number>([...config.reserved_ports, ...(deps.reservedPorts ?? (await wgListenPort(exec, config.wg_interface, log)))])
  const configForwards = parseConfigStaticForwards(config.static_forwards, (k) => (isWgKey(k) ? clientId(k) : k))
  // issue 13: notification channels (secret files read now, before the kernel is touched); metrics counts them once it exists
  const dispatcher = deps.events ? null : await startNotifications(config.notifications, { clock, log: log.child({ component: 'notify' }), count: (c, o, n) => metrics.countNotification(c, o, n) })

  // --- state: one file (state_file) holds the epoch, leases and API-created static forwards ---
  const loaded = await loadState(config.state_file, now())
  if (!loaded.ok) log.error({ err: loaded.error, movedTo: loaded.movedTo }, 'state file unreadable; starting with no saved leases')
  const saved = loaded.ok ? loaded.state : null
  let stateStore: StateStore | null = null
  const staticStore = StaticForwardStore.fromRecords(saved?.static_forwards ?? [], async () => {
    stateStore?.changed()
    await stateStore?.flush()
  }, config.state_file)
  // The epoch keeps counting across restarts because leases survive them (RFC 6886 §3.6).
  const epochStart = saved ? epochFromUnixMs(saved.epochStartedAtUnixMs, clock, now()) : clock.now()
  const hostPorts = new ListeningPortsCache({ clock, read: deps.listeningPorts ?? (() => readListeningPorts()) })
  const apiPort = parseHostPort(config.api_listen)?.port
  if (config.api_token_file && apiPort) reserved.add(apiPort)
  const hostErr = await hostPorts.refresh()
  if (hostErr) log.warn({ err: hostErr }, 'cannot read the host\'s listening ports; only configured ports are reserved')

  const driver: ForwardDriver =
    deps.driver ?? (config.port_forward_driver === 'iptables' ? new IptablesDriver({ exec }) : new NftDriver({ exec, mode: config.nft_mode }))
  const baseParams = {
    publicV4: [publicAddress],
    publicV6: publicV6 ? [publicV6] : [],
    guardedV6: wg6 === null ? [] : config.ipv6_guarded_prefixes.map((p) => cidr6Network(parseCidr6(p)!)),
    wgInterfaces: [config.wg_interface],
  }
  // What the kernel holds from an earlier run (after a crash): ensureBase replaces it, and the
  // connections of forwards that are not restored must end with them (conntrack), as on any delete.
  let previous: readonly Forward[] = []
  if (realKernel) previous = await driver.list().catch(() => [])
  await driver.ensureBase(baseParams)
  log.info({ driver: driver.name, mode: driver instanceof NftDriver ? driver.mode : undefined, publicAddress, publicAddressV6: publicV6 ?? undefined }, 'forwarding base installed')
  if (driver instanceof NftDriver && driver.fallback) log.warn({ asked: config.nft_mode, running: driver.mode, why: driver.fallback }, 'nft: a slower mode than asked for runs')

  const table = new MappingTable({
    clock,
    minPort: config.port_forward_min_port,
    maxPort: config.port_forward_max_port,
    minLifetimeSeconds: config.lifetime_min_seconds,
    maxLifetimeSeconds: config.lifetime_max_seconds,
    maxPerClient: config.max_forwards_per_client,
    isReserved: (p) => reserved.has(p) || hostPorts.has(p),
    isPinholeClient: (a) => isV6(a) && !isUniqueLocal(a),
  })
  stateStore = new StateStore({
    path: config.state_file, clock, now, log: log.child({ component: 'state' }),
    snapshot: (t) => snapshot(table.leases(), epochStart, clock, t, staticStore.records()),
    render: (t) => renderStateChunks(table.leases(), epochStart, clock, t, staticStore.records()),
    // At most one write per 200 ms, wider as the state grows (50,000 leases: one per second), so
    // that saving never takes more than a few percent of a core. A crash loses at most that window.
    coalesceMs: () => Math.max(200, Math.round(table.size / 50)),
  })
  const state = stateStore

  // --- peers: who may ask, and what happens when they come and go ---
  const names = configNames(config.clients)
  let wgEasy = deps.wgEasyNames
  if (!wgEasy) {
    const r = await readWgEasyNames()
    if (r.problem) log.warn({ problem: r.problem }, 'wg-easy client list ignored')
    wgEasy = r.names
  }
  const easy = wgEasy
  const tracker = new PeerTracker({ clock, unixSeconds: () => now() / 1000, disconnectSeconds: config.peer_disconnect_seconds, nameOf: (k) => names(k) ?? easy.get(k) ?? null })
  const metrics = createMetrics({
    forwardCounts: () => {
      const m = new Map<string, { protocol: Protocol; origin: Origin; count: number }>()
      for (const l of table.leases()) {
        const e = m.get(l.protocol + l.origin) ?? { protocol: l.protocol, origin: l.origin, count: 0 }
        e.count++
        m.set(l.protocol + l.origin, e)
      }
      return m.values()
    },
    peers: () => ({ total: tracker.peers().length, connected: tracker.connectedCount }),
  })
  // issue 13: operator notifications; every emit below is one LeaseEvents call
  const publicFor = (client: string): string | null => (!isV6(client) ? publicAddress : isUniqueLocal(client) ? publicV6 : client)
  const notify = new LeaseEvents({ sink: deps.events ?? dispatcher!, peerAt: (a) => tracker.peerByAddress(a), publicAddress: publicFor, now })
  const batcher = new GroupCommit(driver, (size, ms, ok) => {
    metrics.observeBatch(size, ms, ok)
    log.debug({ size, ms, ok }, 'batch')
  })
  const deleteChunk = driver.name === 'iptables' ? IPTABLES_DELETE_CHUNK : DELETE_CHUNK
  /**
   * Ends the connections of deleted forwards (conntrack), a few milliseconds later and for a whole
   * burst at once: a mass expiry in chunks costs one conntrack round, not one per chunk.
   */
  let flowsToEnd: Forward[] = []
  let flowTimer: ReturnType<typeof setTimeout> | null = null
  const endFlows = (gone: readonly Forward[]): void => {
    for (const f of gone) if (!isV6(f.internalAddress)) flowsToEnd.push(f)
    if (flowTimer || flowsToEnd.length === 0) return
    flowTimer = setTimeout(() => {
      flowTimer = null
      const batch = flowsToEnd
      flowsToEnd = []
      void flushConntrack(exec, batch, publicAddress, { listAbove: 2 }).then((r) => {
        if (r.errors.length > 0 || r.skipped.length > 0) log.warn({ errors: r.errors.slice(0, 5), skipped: r.skipped.length }, 'conntrack flush incomplete')
      })
    }, FLOW_FLUSH_DELAY_MS)
  }
  /** Commits to the kernel; then ends the connections of deleted forwards (conntrack) and saves the state. */
  const commit = async (changes: readonly ForwardChange[]): Promise<void> => {
    await batcher.submit(changes)
    if (changes.length === 0) return
    state.changed()
    if (realKernel) endFlows(changes.filter((c) => c.op === 'delete').map((c) => c.forward))
  }
  const expiry = new ExpiryScheduler(clock, table, (r) => commit(r.changes).then(() => notify.removed(r.removed, 'expired')), log.child({ component: 'expiry' }), deleteChunk)
  const addressOfClient = (id: string): string | null => tracker.peerById(id)?.addresses[0] ?? null
  const statics = new StaticForwards({
    store: staticStore, sink: table, commit: (ch) => commit(ch).then(() => notify.staticChanges(ch)), log: log.child({ component: 'static' }),
    // IPv6 addresses only where IPv6 forwarding is configured.
    addressesOf: (id) => (tracker.peerById(id)?.addresses ?? []).filter((a) => !isV6(a) || publicV6 !== null),
  })
  for (const p of [...configForwards.problems, ...statics.setConfigForwards(configForwards.forwards)]) log.warn({ problem: p }, 'static forward skipped')

  const chunked = { commit, chunk: deleteChunk }
  /** Withdraws a client's NAT-PMP/PCP leases (its peer went away or disconnected). */
  const withdrawLeases = async (address: string, why: string): Promise<void> => {
    try {
      const removed = await removeInChunks(chunked, (limit) => table.removeClient(address, limit))
      notify.removed(removed, why === 'peer disconnected' ? 'peer-disconnected' : 'peer-removed')
      if (removed.length > 0) log.info({ client: address, clientId: tracker.peerByAddress(address)?.id, why, count: removed.length, forwards: removed.slice(0, 20).map((l) => `${l.protocol}/${l.externalPort}`) }, 'leases withdrawn')
    } catch (err) {
      log.error({ err, client: address }, 'cannot withdraw leases')
    }
  }
  const onPeerEvents = async (events: PeerEvent[]): Promise<void> => {
    for (const ev of events) {
      const p = ev.peer
      notify.peer(ev)
      log.info({ event: ev.type, client: p.id, clientName: p.name, addresses: p.addresses }, 'peer ' + ev.type)
      if (ev.type === 'removed') {
        for (const a of p.addresses) {
          await withdrawLeases(a, 'peer removed')
          await statics.deactivate(p.id, a)
        }
      } else if (ev.type === 'disconnected') {
        for (const a of p.addresses) await withdrawLeases(a, 'peer disconnected') // static forwards stay
      } else if (ev.type === 'addresses-changed') {
        for (const a of ev.previous) {
          await withdrawLeases(a, 'peer address changed')
          await statics.deactivate(p.id, a)
        }
        await statics.activate(p.id)
      } else {
        await statics.activate(p.id) // added or reconnected
      }
    }
    expiry.reschedule()
  }
  const peerSync = new PeerSync({
    source: deps.peers ?? new WgPeerSource({ exec, ifname: config.wg_interface }),
    tracker, clock, intervalMs: config.peer_refresh_seconds * 1000, onEvents: onPeerEvents, log: log.child({ component: 'peers' }),
  })
  await peerSync.refresh() // before the socket opens, so the first request already knows its sender; installs static forwards

  // Restore the leases granted before a restart or crash. ensureBase replaced whatever the kernel
  // held (a stale table after SIGKILL included), so after this batch it holds exactly the live set.
  if (saved) {
    const r = restorable(saved, clock, now())
    const changes: ForwardChange[] = []
    let skipped = 0
    for (const l of r.leases) {
      const out = tracker.peerByAddress(l.client) ? table.restore(l) : { ok: false as const }
      if (out.ok) changes.push(...out.changes)
      else skipped++
    }
    await commit(changes)
    expiry.reschedule()
    log.info({ restored: changes.length, expired: r.expired, skipped: skipped + r.duplicates }, 'leases restored')
  }
  if (previous.length > 0) {
    const same = (f: Forward): string => `${forwardKey(f)}>${f.internalAddress}:${f.internalPort}`
    const now = new Set(table.leases().map((l) => same(toForward(l))))
    const gone = previous.filter((f) => !now.has(same(f)) && !isV6(f.internalAddress))
    if (gone.length > 0) {
      const r = await flushConntrack(exec, gone, publicAddress)
      log.info({ forwards: gone.length, flowsEnded: r.deleted }, 'forwards left from an earlier run removed with their connections')
    }
  }

  const inPrefix = (address: string): boolean => {
    if (isV6(address)) return wg6 !== null && address !== wg6.address // IPv6: any peer address (ULA or routed global prefix)
    const ip = parseIPv4(address)
    return ip !== null && inCidr4(wg, ip) && ip !== wg.addr
  }
  /** A client is a peer of wg_interface whose tunnel address sent this. A new peer may not be read yet: look once more. */
  const isClient = async (address: string): Promise<boolean> => {
    if (!inPrefix(address)) return false
    if (tracker.peerByAddress(address)) return true
    await peerSync.refreshIfStale()
    return tracker.peerByAddress(address) !== undefined
  }

  const serviceDeps: Omit<ServiceDeps, 'log'> = {
    table, commit, isClient, inflight: new Map(), removals: new Map(), chunk: deleteChunk,
    epochSeconds: () => Math.floor((clock.now() - epochStart) / 1000),
    publicAddress: publicFor,
    notify,
    who: (a) => ({ clientId: tracker.peerByAddress(a)?.id, clientName: tracker.peerByAddress(a)?.name }),
    changed: () => {
      expiry.reschedule()
      state.changed()
    },
  }
  const natpmp = new NatPmpService({ ...serviceDeps, count: (op, r) => metrics.countRequest(op, r), log: log.child({ component: 'natpmp' }) })
  const pcp = new PcpService({ ...serviceDeps, count: (op, r) => metrics.countPcpRequest(op, r), log: log.child({ component: 'pcp' }) })
  const lastSeen = new LastSeen()
  const limiter = new RateLimiter({ clock, ratePerSecond: config.rate_limit_per_second, burst: config.rate_limit_burst })
  const handle = async (msg: Uint8Array, src: string): Promise<Uint8Array | null> => {
    // One client flooding 5351 is dropped here, before any work, and cannot slow another.
    if (!limiter.allow(src)) {
      metrics.countDrop('rate-limit')
      return null
    }
    await hostPorts.refresh() // cached for 250 ms: a port the host just started listening on is not granted
    // Byte 0 is the version: 0 is NAT-PMP, anything else PCP (which answers UNSUPP_VERSION for
    // versions it does not speak). With PCP off, NAT-PMP's 8-byte reply makes clients fall back.
    const from = canonicalAddress(src) ?? src
    lastSeen.note(from, now()) // issue 13: the page's "last request"
    return msg.byteLength > 0 && msg[0] !== NATPMP_VERSION && config.pcp_enabled ? pcp.handle(msg, from) : natpmp.handle(msg, from)
  }

  const cleanupOnFailure = async (): Promise<void> => {
    peerSync.stop()
    await driver.teardown().catch(() => {})
    if (driver instanceof NftDriver) driver.close()
  }
  const listen = deps.listen ?? { host: wg.address, port: NATPMP_PORT }
  let udp
  try {
    udp = await startUdpServer(listen.host, listen.port, handle, log.child({ component: 'udp' }))
  } catch (err) {
    await cleanupOnFailure()
    throw new WgpmpError('WGPMP_ADDRESS_UNKNOWN', `cannot listen on ${listen.host}:${listen.port} (${(err as Error).message}); is ${config.wg_interface} up with ${config.wg_address_v4}?`, { cause: err })
  }
  log.info({ address: udp.address.address, port: udp.address.port, wgInterface: config.wg_interface }, 'NAT-PMP listening')
  let udp6: Awaited<ReturnType<typeof startUdpServer>> | null = null
  if (wg6 !== null) {
    const l6 = deps.listenV6 ?? { host: wg6.address, port: NATPMP_PORT }
    try {
      udp6 = await startUdpServer(l6.host, l6.port, handle, log.child({ component: 'udp6' }), 'udp6')
    } catch (err) {
      await udp.close()
      await cleanupOnFailure()
      throw new WgpmpError('WGPMP_ADDRESS_UNKNOWN', `cannot listen on [${l6.host}]:${l6.port} (${(err as Error).message}); is ${config.wg_interface} up with ${config.wg_address_v6}?`, { cause: err })
    }
    log.info({ address: udp6.address.address, port: udp6.address.port }, 'PCP listening on IPv6')
  }

  const flushLeases = async (): Promise<number> => {
    const removed = await removeInChunks(chunked, (limit) => table.removeAllDynamic(limit))
    notify.removed(removed, 'flushed')
    expiry.reschedule()
    log.info({ count: removed.length }, 'all leases flushed by the operator')
    return removed.length
  }

  // --- the HTTP API and page ---
  let api: ApiServer | null = null
  if (!config.api_token_file) {
    log.info('HTTP API off: set api_token_file to enable it')
  } else {
    try {
      const { token, loose } = await loadApiToken(config.api_token_file)
      if (loose) log.warn({ file: config.api_token_file }, 'api_token_file is readable by others; chmod 600 it')
      api = await startApi({
        listen: parseHostPort(config.api_listen)!,
        token,
        log: log.child({ component: 'api' }),
        deps: {
          listForwards: () => {
            const cn = clock.now()
            const wn = Date.now()
            return [
              ...table.leases().filter((l) => l.origin !== 'static').map((l) => leaseView(l, tracker.peerByAddress(l.client)?.id ?? l.client, cn, wn)),
              ...statics.all().map((f) => staticView(f, addressOfClient(f.client))),
            ]
          },
          listClients: () => tracker.peers().map(clientView),
          createStatic: async (id, spec) => {
            const r = await statics.create(id, spec)
            return r.ok ? { ok: true, forward: staticView(r.forward, addressOfClient(id)) } : r
          },
          deleteForward: (id, fid) => statics.delete(id, fid),
          flushLeases: () => flushLeases(),
          metrics: metrics.registry,
          gateway: wg.address,
          // issue 13: what the internet sees, the latest request, and the Test button
          publicAddressOf: (a) => (a === null ? null : publicFor(a)),
          lastRequestOf: (c) => lastSeen.latest(c.addresses),
          testForward: (f) => probeView(f, { localV4: wg.address, localV6: wg6?.address ?? null, hostFirewallBlocks: deps.hostFirewallBlocks }),
        },
      })
    } catch (err) {
      await udp.close()
      await udp6?.close()
      await cleanupOnFailure()
      throw err
    }
  }
  // issue 13: /metrics without the token, when asked for
  let metricsListener: MetricsListener | null = null
  if (config.metrics_listen) {
    try {
      metricsListener = await startMetricsListener(parseHostPort(config.metrics_listen)!, metrics.registry, log.child({ component: 'metrics' }))
    } catch (err) {
      await api?.close()
      await udp.close()
      await udp6?.close()
      await cleanupOnFailure()
      throw new WgpmpError('WGPMP_ADDRESS_UNKNOWN', `cannot listen on metrics_listen ${config.metrics_listen} (${(err as Error).message})`, { cause: err })
    }
  }
  peerSync.start()

  // Someone deleted or flushed our table (`nft flush ruleset`, a firewall reload): rebuild it with every live forward.
  const watch = driver instanceof NftDriver
    ? new TableWatch({
        exec, clock, log: log.child({ component: 'watch' }),
        listChains: () => driver.listChains(),
        onLost: (reason) => batcher.exclusive(async () => {
          log.warn({ reason }, 'the wgpmp table was deleted or flushed by someone else; rebuilding it')
          metrics.countRebuild(reason)
          await driver.ensureBase(baseParams)
          const all = table.leases().map((l) => ({ op: 'add' as const, forward: toForward(l) }))
          await driver.apply(all)
          log.info({ forwards: all.length }, 'table rebuilt')
        }),
      })
    : null
  watch?.start()
  if (deps.events || dispatcher!.channels.length > 0) notify.arm() // from now on (what the start restored or installed is not news); no channels: no events built at all

  let closed = false
  return {
    udpAddress: udp.address,
    udpAddressV6: udp6?.address ?? null,
    httpAddress: api?.address ?? null,
    table,
    driver,
    refreshPeers: () => peerSync.refresh(),
    flushLeases,
    async close(opts) {
      if (closed) return
      closed = true
      if (flowTimer) clearTimeout(flowTimer)
      peerSync.stop()
      expiry.stop()
      await watch?.stop()
      await api?.close()
      await metricsListener?.close()
      await udp.close()
      await udp6?.close()
      await batcher.idle()
      await dispatcher?.close()
      await state.close() // leases stay in the state file: the next start restores them
      if (opts?.teardown ?? config.teardown_on_exit) {
        await driver.teardown()
        log.info({ forwards: table.size + table.staticCount }, 'forwards removed, table deleted')
      }
      if (driver instanceof NftDriver) driver.close()
    },
  }
}
