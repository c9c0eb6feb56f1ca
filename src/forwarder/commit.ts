/**
 * The commit every change goes through: the group commit (one atomic batch for everything
 * submitted meanwhile) and the journal (one fdatasync for every record staged meanwhile), both
 * done before it resolves, so a reply is sent only once its change is in the kernel and on disk.
 * A renewal (no kernel change) waits for its journal record alone. Then the consequences: the
 * snapshot is marked due, and the connections of deleted forwards end.
 */
import type { ForwardChange } from '../core/forward.js'
import type { GroupCommit } from '../drivers/batcher.js'
import type { Flows } from '../drivers/flows.js'

export function kernelCommit(d: {
  batcher: GroupCommit
  durable: () => Promise<void>
  flows: Flows
  stateChanged: () => void
}): (changes: readonly ForwardChange[]) => Promise<void> {
  return async (changes) => {
    await Promise.all([d.batcher.submit(changes), d.durable()])
    if (changes.length === 0) return
    d.stateChanged()
    const deleted = changes.filter((c) => c.op === 'delete').map((c) => c.forward)
    if (deleted.length > 0) d.flows.ended(deleted)
  }
}
