/**
 * The leases and the one path that changes forwards: the mapping table (journaled), the group
 * commit to the kernel, the forwarder, expiry, and the static forwards.
 */
import { isV6, type ForwardChange } from '../core/forward.js'
import { isUniqueLocal, type Cidr4, type Cidr6 } from '../core/ip.js'
import { GroupCommit } from '../drivers/batcher.js'
import { admission } from '../forwarder/admission.js'
import { kernelCommit } from '../forwarder/commit.js'
import { Forwarder } from '../forwarder/forwarder.js'
import { peerPolicy } from '../forwarder/peer-policy.js'
import { StaticForwards } from '../forwarder/statics.js'
import { ExpiryScheduler } from '../mappings/expiry.js'
import { parseConfigStaticForwards } from '../mappings/static.js'
import { MappingTable } from '../mappings/table.js'
import type { LeaseEvents } from '../notify/emit.js'
import type { DurableState } from '../state/durable-state.js'
import { clientId, type PeerEvent, type PeerTracker } from '../wireguard/peers.js'
import { isWgKey } from '../wireguard/wg-dump.js'
import type { Context } from './deps.js'
import type { Kernel } from './kernel.js'

/** The lease table: the config's range, lifetimes and quotas; every change staged in the journal. */
export function leaseTable(ctx: Context, o: { state: DurableState; tracker: PeerTracker; isReserved: (port: number) => boolean }): MappingTable {
  const { config } = ctx
  const table = new MappingTable({
    clock: ctx.clock,
    minPort: config.port_forward_min_port,
    maxPort: config.port_forward_max_port,
    minLifetimeSeconds: config.lifetime_min_seconds,
    maxLifetimeSeconds: config.lifetime_max_seconds,
    upnpMaxLifetimeSeconds: config.upnp_permanent_lease_seconds,
    maxPerClient: config.max_forwards_per_client,
    isReserved: o.isReserved,
    isPinholeClient: (a) => isV6(a) && !isUniqueLocal(a),
    // Every lease change is staged in the journal; the kernel commit waits for it on disk.
    onChange: (op, l, hold) => o.state.stage(op, l, hold),
    portHoldSeconds: config.port_hold_seconds,
  })
  o.state.attach(table, (a) => o.tracker.peerByAddress(a)?.id)
  return table
}

export interface Forwarding {
  readonly batcher: GroupCommit
  readonly commit: (changes: readonly ForwardChange[]) => Promise<void>
  readonly forwarder: Forwarder
  readonly expiry: ExpiryScheduler
  readonly statics: StaticForwards
  /** What the peer sync does with peer events: withdraw, activate statics, notify, reschedule expiry. */
  readonly onPeerEvents: (events: PeerEvent[]) => Promise<void>
}

export function startForwarding(
  ctx: Context,
  o: {
    kernel: Kernel
    table: MappingTable
    state: DurableState
    tracker: PeerTracker
    notify: LeaseEvents
    wg4: Cidr4
    wg6: Cidr6 | null
    hasPublicV6: boolean
    observeBatch: (size: number, ms: number, ok: boolean) => void
    /** The peer sync's refresh-if-stale (it is built after the forwarder). */
    refreshIfStale: () => Promise<void>
  },
): Forwarding {
  const { log, components } = ctx
  const { table, state, tracker, notify } = o
  const { driver, flows } = o.kernel
  const batcher = new GroupCommit(driver, (size, ms, ok) => {
    o.observeBatch(size, ms, ok)
    log.debug({ size, ms, ok }, 'batch')
  })
  components.add('group commit', () => batcher.idle())
  components.add('flows', () => flows.close())
  const commit = kernelCommit({ batcher, durable: () => state.sync(), flows, stateChanged: () => state.changed() })
  const chunk = driver.capabilities.bulkDeleteChunk
  let expiry: ExpiryScheduler | null = null
  const forwarder = new Forwarder({
    table,
    commit,
    isClient: admission({ wg4: o.wg4, wg6: o.wg6, known: (a) => tracker.peerByAddress(a) !== undefined, refreshIfStale: o.refreshIfStale }),
    changed: () => {
      expiry?.reschedule()
      state.changed()
    },
    chunk,
    who: (a) => {
      const p = tracker.peerByAddress(a)
      return { clientId: p?.id, clientName: p?.name }
    },
    log: log.child({ component: 'forwarder' }),
    events: {
      created: (l) => notify.created(l, [l]),
      refused: (l) => notify.refused(l, [l]),
      removed: (ls, why) => notify.removed(ls, why === 'peer-address-changed' ? 'peer-removed' : why),
    },
  })
  const exp = new ExpiryScheduler(ctx.clock, table, (r) => forwarder.expire(r), log.child({ component: 'expiry' }), chunk)
  expiry = exp
  components.add('expiry', () => exp.stop())
  const statics = new StaticForwards({
    store: state.statics,
    sink: table,
    commit: (ch) => commit(ch).then(() => notify.staticChanges(ch)),
    log: log.child({ component: 'static' }),
    clock: ctx.clock,
    // IPv6 addresses only where IPv6 forwarding is configured.
    addressesOf: (id) => (tracker.peerById(id)?.addresses ?? []).filter((a) => !isV6(a) || o.hasPublicV6),
  })
  const configForwards = parseConfigStaticForwards(ctx.config.static_forwards, (k) => (isWgKey(k) ? clientId(k) : k))
  for (const p of [...configForwards.problems, ...statics.setConfigForwards(configForwards.forwards)]) log.warn({ problem: p }, 'static forward skipped')
  const policy = peerPolicy({ forwarder, statics, releaseHolds: (a) => table.releaseHolds(a), log })
  const onPeerEvents = async (events: PeerEvent[]): Promise<void> => {
    for (const ev of events) notify.peer(ev)
    await policy(events)
    exp.reschedule()
  }
  return { batcher, commit, forwarder, expiry: exp, statics, onPeerEvents }
}
