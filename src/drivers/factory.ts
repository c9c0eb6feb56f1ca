/**
 * createDriver: the one place that knows the concrete driver classes. Everything else holds a
 * ForwardDriver and asks it (capabilities, describe, watchTable, close).
 *
 * How daemon.ts uses it (no instanceof, no name checks):
 *
 *   const driver = deps.driver ?? createDriver({ driver: config.port_forward_driver, nftMode: config.nft_mode, exec })
 *   await driver.ensureBase(baseParams)
 *   const d = driver.describe()
 *   log.info({ ...d, publicAddress }, 'forwarding base installed')
 *   if (d.fallback) log.warn(d, 'driver: a slower mode than asked for runs')
 *   const chunk = driver.capabilities.bulkDeleteChunk            // was DELETE_CHUNK / IPTABLES_DELETE_CHUNK
 *   const realKernel = driver.capabilities.kernel                // conntrack flush, crash reconciliation
 *   const watch = driver.watchTable({ clock, log: log.child({ component: 'watch' }),   // null unless capabilities.watch
 *     onLost: (reason) => batcher.exclusive(() => {
 *       const all = table.leases().map(toForward)          // read before the first await (absorbQueued)
 *       return driver.ensureBase(baseParams).then(() => driver.apply(all.map((forward) => ({ op: 'add', forward }))))
 *     }, { absorbQueued: true }) })
 *   watch?.start()
 *   ...
 *   close: await watch?.stop(); ...; await batcher.idle(); [await driver.teardown()]; driver.close()
 */
import type { Exec } from '../core/exec.js'
import type { DriverName, ForwardDriver } from './driver.js'
import { IptablesDriver } from './iptables.js'
import { MemoryDriver } from './memory.js'
import { NftDriver, type NftMode } from './nft.js'

export type { DriverCapabilities, DriverDescription, DriverName, ForwardDriver, LostReason, TableWatcher, WatchHooks } from './driver.js'
export type { NftMode } from './nft.js'

export interface DriverOptions {
  /** config.port_forward_driver; 'memory' for tests (nothing reaches the kernel). */
  readonly driver: DriverName
  /** How the nft driver reaches the kernel (config.nft_mode); default 'library'. Ignored by the others. */
  readonly nftMode?: NftMode
  /** Runs nft / iptables-save / iptables-restore; not used by the memory driver. */
  readonly exec: Exec
}

export function createDriver(opts: DriverOptions): ForwardDriver {
  switch (opts.driver) {
    case 'nft':
      return new NftDriver({ exec: opts.exec, ...(opts.nftMode === undefined ? {} : { mode: opts.nftMode }) })
    case 'iptables':
      return new IptablesDriver({ exec: opts.exec })
    case 'memory':
      return new MemoryDriver()
  }
}
