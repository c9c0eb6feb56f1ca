/**
 * DurableState: the state file (the snapshot) and the journal beside it, as one component. Every
 * lease change is staged in the journal as the table makes it, made durable by sync() (one
 * fdatasync per group-committed batch, awaited with the kernel batch before any reply), and
 * compacted into the snapshot in the background. Opening it = snapshot + journal replay; a FIFO
 * or device as state_file is refused.
 */
import type { Clock } from '../core/clock.js'
import type { Lease } from '../core/forward.js'
import type { Logger } from '../log.js'
import type { MappingTable, PortHold } from '../mappings/table.js'
import { loadDurableState } from './durable.js'
import { Journal } from './journal.js'
import { StaticForwardStore } from './static-store.js'
import { epochFromUnixMs, renderStateChunks, snapshot, StateStore, toPersisted, type HoldRecord, type PersistedState, type SnapshotExtra } from './store.js'

export class DurableState {
  private store: StateStore | null = null
  private peerOf: (address: string) => string | undefined = () => undefined

  private constructor(
    private readonly o: { path: string; clock: Clock; log: Logger },
    /** What was saved (snapshot + replayed journal), or null. */
    readonly saved: PersistedState | null,
    /** Journal records replayed over the snapshot. */
    readonly replayed: number,
    /** Clock ms the NAT-PMP epoch counts from: it goes on across restarts unless state was lost (RFC 6886 §3.6). */
    readonly epochStart: number,
    private readonly journal: Journal,
    /** The API-created static forwards, saved in the same file. */
    readonly statics: StaticForwardStore,
  ) {}

  static async open(o: { path: string; clock: Clock; log: Logger }): Promise<DurableState> {
    const { clock, log } = o
    const loaded = await loadDurableState(o.path, clock.wall())
    if (loaded.error) log.error({ err: loaded.error, movedTo: loaded.movedTo }, 'state file unreadable; starting with no saved leases')
    if (loaded.torn.length > 0) log.info({ torn: loaded.torn }, 'journal ends in a torn record (a crash mid-write); it was never acknowledged and is skipped')
    if (loaded.lost !== null)
      (loaded.fresh ? log.info.bind(log) : log.warn.bind(log))({ why: loaded.lost }, 'saved state lost or absent; the epoch restarts at 0 (RFC 6886 §3.6)')
    const saved = loaded.state
    const epochStart = saved && loaded.lost === null ? epochFromUnixMs(saved.epochStartedAtUnixMs, clock, clock.wall()) : clock.now()
    const self: { s: DurableState | null } = { s: null }
    const journal = new Journal({ statePath: o.path, gen: loaded.nextGen, log: log.child({ component: 'journal' }), onFailure: () => self.s?.changed() })
    const statics = new StaticForwardStore(saved?.static_forwards ?? [], () => self.s?.flushNow() ?? Promise.resolve(), o.path)
    self.s = new DurableState(o, saved, loaded.replayed, epochStart, journal, statics)
    return self.s
  }

  /** The table's onChange: stages a lease change in the journal (made durable by the next sync()). */
  stage(op: 'put' | 'del', l: Lease, hold?: PortHold): void {
    const { clock } = this.o
    this.journal.stage(
      op === 'put'
        ? { op, lease: toPersisted(l, clock, clock.wall(), this.peerOf(l.client)) }
        : { op, client: l.client, protocol: l.protocol, internalPort: l.internalPort, ...(hold ? { hold: this.holdRecord(hold) } : {}) },
    )
  }

  /** Starts writing snapshots of `table`; `peerOf` names the peer (client id) that holds an address. */
  attach(table: MappingTable, peerOf: (address: string) => string | undefined): void {
    const { clock } = this.o
    this.peerOf = peerOf
    const extra = (): SnapshotExtra => ({ journal: this.journal.generation, peerOf, holds: table.holds().map((h) => this.holdRecord(h)) })
    this.store = new StateStore({
      path: this.o.path,
      clock,
      log: this.o.log.child({ component: 'state' }),
      snapshot: (t) => snapshot(table.leases(), this.epochStart, clock, t, this.statics.records(), extra()),
      render: (t) => renderStateChunks(table.leases(), this.epochStart, clock, t, this.statics.records(), extra()),
      // The snapshot is compaction (the journal made every change durable before its reply): rotate
      // the journal, write the snapshot naming the new generation, delete the older ones.
      prepare: () => this.journal.rotate(),
      done: (gen) => this.journal.removeBefore(gen),
      // At most one compaction per 10 s, wider as the state grows (50,000 leases: one per 10 s).
      coalesceMs: () => Math.max(10_000, Math.round(table.size / 5)),
    })
  }

  /** Resolves once every staged change is on disk (one fdatasync for all staged meanwhile). */
  sync(): Promise<void> {
    return this.journal.sync()
  }

  /** A snapshot is due (within the coalescing window). */
  changed(): void {
    this.store?.changed()
  }

  /** Writes a snapshot now (after start: the replayed journal goes into it, older generations are deleted). */
  async flushNow(): Promise<void> {
    this.store?.changed()
    await this.store?.flush()
  }

  /** Syncs the journal (whatever was in flight is on disk), then writes the final snapshot. */
  async close(): Promise<void> {
    await this.journal.close()
    await this.store?.close()
  }

  private holdRecord(h: PortHold): HoldRecord {
    const { clock } = this.o
    const peer = this.peerOf(h.client)
    return {
      client: h.client,
      internalPort: h.internalPort,
      externalPort: h.externalPort,
      untilUnixMs: Math.max(0, Math.round(clock.wall() + (h.until - clock.now()))),
      ...(peer === undefined ? {} : { peer }),
    }
  }
}
