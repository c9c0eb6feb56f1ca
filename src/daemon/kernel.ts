/** The kernel side: the driver and its base table, what a crash left there, flows, and the table's rebuild. */
import { cidr6Network, parseCidr6, type Cidr6 } from '../core/ip.js'
import { toForward, type Forward } from '../core/forward.js'
import type { GroupCommit } from '../drivers/batcher.js'
import type { BaseParams, ForwardDriver } from '../drivers/driver.js'
import { createDriver } from '../drivers/factory.js'
import { ConntrackFlows, noFlows, type Flows } from '../drivers/flows.js'
import type { MappingTable } from '../mappings/table.js'
import type { Context } from './deps.js'

export interface Kernel {
  readonly driver: ForwardDriver
  readonly flows: Flows
  readonly base: BaseParams
  /** What the kernel held before ensureBase replaced it (after a crash): their connections end unless restored. */
  readonly previous: readonly Forward[]
}

/**
 * Installs the base table. Its close deletes the table when `stop.teardown` says so (a failed start
 * always does; a stop follows teardown_on_exit); `forwardCount` is for the log line.
 */
export async function startKernel(
  ctx: Context,
  o: { publicV4: readonly string[]; publicV6: string | null; wg6: Cidr6 | null; stop: { teardown: boolean }; forwardCount: () => number },
): Promise<Kernel> {
  const { config, deps, exec, log } = ctx
  const driver = deps.driver ?? createDriver({ driver: config.port_forward_driver, nftMode: config.nft_mode, exec })
  const flows =
    deps.flows ?? (driver.capabilities.kernel ? new ConntrackFlows({ exec, publicAddresses: o.publicV4, log: log.child({ component: 'conntrack' }) }) : noFlows)
  ctx.components.add('driver', () => driver.close())
  const base: BaseParams = {
    publicV4: o.publicV4,
    publicV6: o.publicV6 ? [o.publicV6] : [],
    guardedV6: o.wg6 === null ? [] : config.ipv6_guarded_prefixes.map((p) => cidr6Network(parseCidr6(p)!)),
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
  await driver.ensureBase(base)
  ctx.components.add('forwarding base', async () => {
    if (o.stop.teardown) {
      await driver.teardown()
      log.info({ forwards: o.forwardCount() }, 'forwards removed, table deleted')
    }
  })
  const described = driver.describe()
  log.info({ ...described, publicAddress: o.publicV4[0], publicAddressV6: o.publicV6 ?? undefined }, 'forwarding base installed')
  if (o.publicV4.length > 1)
    log.info(
      { publicAddress: o.publicV4[0], alsoForwarded: o.publicV4.slice(1), publicInterface: config.public_interface },
      'public_address_v4 is not an address of this host (1:1 NAT, a Docker bridge): forwards also match what arrives for public_interface',
    )
  if (described.fallback) log.warn(described, 'driver: a slower mode than asked for runs')
  return { driver, flows, base, previous }
}

/** Someone deleted or flushed our table (`nft flush ruleset`, a firewall reload): rebuild it with every live forward. */
export function watchTable(ctx: Context, k: Kernel, o: { batcher: GroupCommit; table: MappingTable; countRebuild: (reason: string) => void }): void {
  const log = ctx.log
  const watch = k.driver.watchTable({
    clock: ctx.clock,
    log: log.child({ component: 'watch' }),
    onLost: (reason) =>
      o.batcher.exclusive(
        async () => {
          // Read before the first await: the submissions queued behind the rebuild are in it (absorbQueued).
          const all = o.table.leases().map((l) => ({ op: 'add' as const, forward: toForward(l) }))
          log.warn({ reason }, 'the wgpmp table was deleted or flushed by someone else; rebuilding it')
          o.countRebuild(reason)
          await k.driver.ensureBase(k.base)
          await k.driver.apply(all)
          log.info({ forwards: all.length }, 'table rebuilt')
        },
        { absorbQueued: true },
      ),
  })
  if (watch) {
    watch.start()
    ctx.components.add('table watch', () => watch.stop())
  }
}
