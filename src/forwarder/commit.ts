/**
 * The kernel commit every change goes through: the group commit (one atomic batch for everything
 * submitted meanwhile), then its consequences: the state file is marked dirty, and the
 * connections of deleted forwards end.
 */
import type { ForwardChange } from '../core/forward.js'
import type { GroupCommit } from '../drivers/batcher.js'
import type { Flows } from '../drivers/flows.js'

export function kernelCommit(d: { batcher: GroupCommit; flows: Flows; stateChanged: () => void }): (changes: readonly ForwardChange[]) => Promise<void> {
  return async (changes) => {
    await d.batcher.submit(changes)
    if (changes.length === 0) return
    d.stateChanged()
    const deleted = changes.filter((c) => c.op === 'delete').map((c) => c.forward)
    if (deleted.length > 0) d.flows.ended(deleted)
  }
}
