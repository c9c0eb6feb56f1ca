/**
 * Restart: the leases granted before a restart or a crash go back into the table and the kernel,
 * and what an earlier run left in the kernel but is not restored has its connections ended.
 */
import type { Clock } from '../core/clock.js'
import { forwardKey, toForward, type Forward, type ForwardChange } from '../core/forward.js'
import type { Flows } from '../drivers/flows.js'
import type { Logger } from '../log.js'
import type { MappingTable } from '../mappings/table.js'
import { restorable, type PersistedState } from '../state/store.js'

export interface RestoreDeps {
  table: MappingTable
  clock: Clock
  commit: (changes: readonly ForwardChange[]) => Promise<void>
  /** Is this address a configured peer's now? A lease of an address no peer holds is not restored. */
  known: (address: string) => boolean
  log: Logger
}

/** Re-inserts the saved leases that are still live and whose client is still a peer; commits them in one batch. */
export async function restoreLeases(saved: PersistedState, d: RestoreDeps): Promise<void> {
  const r = restorable(saved, d.clock, d.clock.wall())
  const changes: ForwardChange[] = []
  let skipped = 0
  for (const l of r.leases) {
    const out = d.known(l.client) ? d.table.restore(l) : { ok: false as const }
    if (out.ok) changes.push(...out.changes)
    else skipped++
  }
  await d.commit(changes)
  d.log.info({ restored: changes.length, expired: r.expired, skipped: skipped + r.duplicates }, 'leases restored')
}

/**
 * The forwards an earlier run left in the kernel (read before the base was replaced) that the
 * table does not hold now: their flows end, as on any delete.
 */
export async function endLeftoverFlows(previous: readonly Forward[], d: { table: MappingTable; flows: Flows; log: Logger }): Promise<void> {
  if (previous.length === 0) return
  const same = (f: Forward): string => `${forwardKey(f)}>${f.internalAddress}:${f.internalPort}`
  const live = new Set(d.table.leases().map((l) => same(toForward(l))))
  const gone = previous.filter((f) => !live.has(same(f)))
  if (gone.length === 0) return
  const flowsEnded = await d.flows.endLeftovers(gone)
  d.log.info({ forwards: gone.length, flowsEnded }, 'forwards left from an earlier run removed with their connections')
}
