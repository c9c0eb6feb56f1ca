/**
 * Restart = snapshot + journal replay (issue 10 §2). loadDurableState reads the snapshot
 * (state_file, store.ts) and every journal generation it names or later (journal.ts), and says
 * whether the NAT-PMP epoch may continue: only when nothing was lost. If the state file was
 * deleted or replaced by a corrupt one, or a journal is damaged (not merely torn at its tail),
 * some acknowledged lease may be gone, and RFC 6886 §3.6 asks the epoch to restart at 0 so that
 * clients notice and map again. `lost` says why, for the log.
 */
import type { WgpmpError } from '../core/errors.js'
import { applyJournal, checkStatePath, journalGenerations, readJournals } from './journal.js'
import { loadState, STATE_VERSION, type PersistedState } from './store.js'

export interface DurableLoad {
  /** The snapshot with the journal replayed over it; null when nothing was saved at all. */
  readonly state: PersistedState | null
  /** Why the epoch restarts at 0 (null: it continues from the snapshot). */
  readonly lost: string | null
  /** True when nothing at all was found (a first start, or everything was deleted): `lost` is then informational. */
  readonly fresh: boolean
  /** The snapshot could not be used (moved aside: movedTo). */
  readonly error: WgpmpError | null
  readonly movedTo: string | null
  /** The generation the journal writes next. */
  readonly nextGen: number
  /** Journal records replayed over the snapshot. */
  readonly replayed: number
  /** Torn journal tails ("file@offset"): normal after a crash, the records there were never acknowledged. */
  readonly torn: readonly string[]
}

/**
 * Never rejects for a bad file (it is reported); rejects with WGPMP_CONFIG_INVALID naming
 * state_file when the path is not a regular file (a FIFO would block the daemon forever).
 */
export async function loadDurableState(statePath: string, nowUnixMs: number): Promise<DurableLoad> {
  await checkStatePath(statePath)
  const loaded = await loadState(statePath, nowUnixMs)
  const snap = loaded.ok ? loaded.state : null
  const gens = await journalGenerations(statePath)
  const fromGen = snap?.journal ?? 0
  const j = await readJournals(statePath, fromGen)
  const nextGen = Math.max(j.lastGen, gens.length > 0 ? gens[gens.length - 1]! : -1, fromGen - 1) + 1
  let lost: string | null = null
  if (!loaded.ok) lost = `the state file could not be used: ${loaded.error.message}`
  else if (snap === null && gens.length > 0) lost = `${statePath} is missing but its journal is there (the state file was deleted?)`
  else if (snap === null) lost = `no state file at ${statePath} (a first start, or it was deleted)`
  if (j.corrupt.length > 0) lost = `${lost ? lost + '; ' : ''}journal damaged at ${j.corrupt.join(', ')} (records after the damage were not replayed)`
  const fresh = loaded.ok && snap === null && gens.length === 0
  if (snap === null && j.entries.length === 0) {
    return { state: null, lost, fresh, error: loaded.ok ? null : loaded.error, movedTo: loaded.ok ? null : loaded.movedTo, nextGen, replayed: 0, torn: j.torn }
  }
  const base: PersistedState = snap ?? { version: STATE_VERSION, epochStartedAtUnixMs: Math.round(nowUnixMs), leases: [], static_forwards: [] }
  // Nothing to replay: the snapshot exactly as written (applyJournal would also fold duplicate keys).
  const merged = j.entries.length === 0 ? { leases: base.leases, holds: base.holds ?? [] } : applyJournal(base, j.entries)
  return {
    state: { ...base, leases: merged.leases, holds: merged.holds },
    lost,
    fresh,
    error: loaded.ok ? null : loaded.error,
    movedTo: loaded.ok ? null : loaded.movedTo,
    nextGen,
    replayed: j.entries.length,
    torn: j.torn,
  }
}
