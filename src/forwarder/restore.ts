/**
 * Restart: the leases granted before a restart or a crash go back into the table and the kernel,
 * and what an earlier run left in the kernel but is not restored has its connections ended.
 */
import type { Clock } from '../core/clock.js'
import { forwardKey, toForward, type Forward, type ForwardChange } from '../core/forward.js'
import type { Flows } from '../drivers/flows.js'
import type { Logger } from '../log.js'
import type { MappingTable } from '../mappings/table.js'
import { identityRefusal, RESTORE_REASONS } from '../state/restore.js'
import { restorable, type PersistedState } from '../state/store.js'

export interface RestoreDeps {
  table: MappingTable
  clock: Clock
  commit: (changes: readonly ForwardChange[]) => Promise<void>
  /** The peer that holds this address now, if any. A lease is restored only to the peer it was granted to. */
  peerAt: (address: string) => { readonly id: string } | undefined
  /** Journal records replayed over the snapshot (for the log line). */
  replayed: number
  log: Logger
}

/**
 * Re-inserts the saved leases that are still live, belong to the same peer (public key) that holds
 * their address now, and fit today's range, reserved ports and lifetime clamp; then the held ports.
 * Commits them in one batch. What is dropped is logged with the reason.
 */
export async function restoreLeases(saved: PersistedState, d: RestoreDeps): Promise<void> {
  const now = d.clock.wall()
  const r = restorable(saved, d.clock, now)
  const changes: ForwardChange[] = []
  const dropped: Record<string, number> = {}
  const examples: string[] = []
  let reclamped = 0
  for (const l of r.leases) {
    const refusal = identityRefusal(l, d.peerAt)
    const out = refusal === null ? d.table.restore(l) : { ok: false as const, reason: refusal }
    if (out.ok) {
      changes.push(...out.changes)
      if (out.lease.lifetimeSeconds !== l.lifetimeSeconds) reclamped++
      continue
    }
    dropped[out.reason] = (dropped[out.reason] ?? 0) + 1
    if (examples.length < 20) examples.push(`${l.client} ${l.protocol}/${l.externalPort}: ${RESTORE_REASONS[out.reason] ?? out.reason}`)
  }
  let holds = 0
  for (const h of saved.holds ?? []) {
    if (identityRefusal(h, d.peerAt) !== null) continue
    if (d.table.restoreHold({ client: h.client, internalPort: h.internalPort, externalPort: h.externalPort, until: d.clock.now() + (h.untilUnixMs - now) }))
      holds++
  }
  await d.commit(changes)
  const skipped = r.duplicates + Object.values(dropped).reduce((a, b) => a + b, 0)
  d.log.info({ restored: changes.length, expired: r.expired, skipped, reclamped, holds, replayed: d.replayed }, 'leases restored')
  if (examples.length > 0) d.log.warn({ dropped, examples }, 'saved leases not restored')
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
