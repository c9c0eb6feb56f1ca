/**
 * startDaemon: the composition root. It builds every component in order, each from the ones
 * before it (the builders are in daemon/), and each registers its close, so a failed start and a
 * stop both close in reverse order. Policy lives in the components, not here.
 */
import type { Config } from './config/schema.js'
import { systemClock } from './core/clock.js'
import { systemExec } from './core/exec.js'
import { isV6 } from './core/forward.js'
import { isUniqueLocal, parseCidr4, parseCidr6 } from './core/ip.js'
import { Components } from './core/lifecycle.js'
import { publicAddresses } from './host/addresses.js'
import { createMetrics, type Metrics } from './http/metrics.js'
import { metricSources } from './http/sources.js'
import type { Logger } from './log.js'
import { LeaseEvents } from './notify/emit.js'
import { startNotifications } from './notify/index.js'
import { endLeftoverFlows, restoreLeases } from './forwarder/restore.js'
import { DurableState } from './state/durable-state.js'
import type { Context, Daemon, Deps } from './daemon/deps.js'
import { leaseTable, startForwarding } from './daemon/forwarding.js'
import { startHostFirewall, startReservedPorts } from './daemon/host.js'
import { startKernel, watchTable } from './daemon/kernel.js'
import { peerDirectory, peerSync } from './daemon/peers.js'
import { serve } from './daemon/serve.js'

export type { Daemon, Deps } from './daemon/deps.js'

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
  if (!config.port_forward_enabled) {
    deps.log.info('port forwarding is disabled (port_forward_enabled: false); nothing to do')
    return disabled
  }
  const ctx: Context = { config, deps, clock: deps.clock ?? systemClock, exec: deps.exec ?? systemExec, log: deps.log, components: new Components() }
  const stop = { teardown: config.teardown_on_exit }
  try {
    return await build(ctx, stop)
  } catch (err) {
    stop.teardown = true // a half-started daemon leaves nothing in the kernel
    await ctx.components.closeAll()
    throw err
  }
}

async function build(ctx: Context, stop: { teardown: boolean }): Promise<Daemon> {
  const { config, deps, clock, log, components } = ctx
  const wg4 = parseCidr4(config.wg_address_v4)!
  const wg6 = config.wg_address_v6 === undefined ? null : parseCidr6(config.wg_address_v6)
  const pub = publicAddresses(config, wg6, { v4: deps.publicAddress, v6: deps.publicAddressV6 })
  const publicFor = (client: string): string | null => (!isV6(client) ? pub.v4 : isUniqueLocal(client) ? pub.v6 : client)
  const { isReserved, hostPorts } = await startReservedPorts(ctx)

  // State (snapshot + journal: every lease change is on disk before its reply), then the
  // notification channels (secret files), both read before the kernel is touched.
  const state = await DurableState.open({ path: config.state_file, clock, log })
  components.add('state', () => state.close()) // the journal synced, then the final snapshot: the next start restores the leases
  let metricsRef: Metrics | null = null // the notifications count into the metrics built later
  const notifyLog = log.child({ component: 'notify' })
  const dispatcher = deps.events
    ? null
    : await startNotifications(config.notifications, { clock, log: notifyLog, count: (c, o, n) => metricsRef?.countNotification(c, o, n) })
  if (dispatcher) components.add('notifications', () => dispatcher.close())

  // The kernel, the peers, the leases.
  const kernel = await startKernel(ctx, { publicV4: pub.matchV4, publicV6: pub.v6, wg6, stop, forwardCount: () => table.size + table.staticCount })
  const dir = await peerDirectory(ctx)
  const table = leaseTable(ctx, { state, tracker: dir.tracker, isReserved })
  const metrics = createMetrics(metricSources({ table, tracker: dir.tracker }))
  metricsRef = metrics
  // Operator notifications: armed once started (what a start restores or installs is not news).
  const notify = new LeaseEvents({
    sink: deps.events ?? dispatcher!,
    peerAt: (a) => dir.tracker.peerByAddress(a),
    publicAddress: publicFor,
    clock,
  })
  const hostFw = await startHostFirewall(ctx, kernel.driver, metrics.registry)

  // The forwarder: every change to a forward goes through it; the peer sync drives its withdrawals.
  const forwarding = startForwarding(ctx, {
    ...{ kernel, table, state, tracker: dir.tracker, notify, wg4, wg6, hasPublicV6: pub.v6 !== null },
    observeBatch: (size, ms, ok) => metrics.observeBatch(size, ms, ok),
    refreshIfStale: () => sync.refreshIfStale(),
  })
  const sync = peerSync(ctx, dir, forwarding.onPeerEvents)
  await sync.refresh() // before the socket opens, so the first request already knows its sender; installs static forwards

  // Restart: ensureBase replaced what the kernel held, so after this it holds exactly the live set.
  if (state.saved) {
    await restoreLeases(state.saved, { table, clock, commit: forwarding.commit, peerAt: (a) => dir.tracker.peerByAddress(a), replayed: state.replayed, log })
    forwarding.expiry.reschedule()
  }
  await state.flushNow().catch(() => {}) // compact at start: the replayed journal into a fresh snapshot
  await endLeftoverFlows(kernel.previous, { table, flows: kernel.flows, log })

  // Front-ends, then the API; then the timers.
  const served = await serve(ctx, {
    forwarding,
    tracker: dir.tracker,
    metrics,
    hostPorts,
    hostFw,
    epochStart: state.epochStart,
    publicV4: pub.v4,
    ...{ publicV6: pub.v6, publicFor, wg4, wg6 },
  })
  sync.start()
  hostFw?.start()
  watchTable(ctx, kernel, { batcher: forwarding.batcher, table, countRebuild: (reason) => metrics.countRebuild(reason) })
  if (deps.events || (dispatcher && dispatcher.channels.length > 0)) notify.arm() // no channels: no events built at all

  return {
    udpAddress: served.udp,
    udpAddressV6: served.udp6,
    httpAddress: served.http,
    table,
    driver: kernel.driver,
    refreshPeers: () => sync.refresh(),
    flushLeases: () => forwarding.forwarder.flush(),
    async close(opts) {
      stop.teardown = opts?.teardown ?? config.teardown_on_exit
      const errors = await components.closeAll((name, ms) => log.warn({ component: name, ms: Math.round(ms) }, 'a component is slow to close'))
      if (errors.length > 0) throw new AggregateError(errors, errors.map((e) => e.message).join('; '))
    },
  }
}
