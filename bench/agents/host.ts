/**
 * Bench agent in the daemon's namespace: runs the real daemon (startDaemon from src/daemon.ts,
 * with the real NftDriver or IptablesDriver on this namespace's kernel tables) in this process,
 * so the harness can also read its memory (node --expose-gc), count the processes it spawns,
 * time every batch the group commit sends, and move its clock (expiry of many leases at once).
 *
 * What differs from `node dist/src/main.js --config X`: only the wiring main.ts does (argv,
 * signals), the logger's destination (a file, synchronous, like main's stdout) and four
 * transparent wrappers: a Clock that is systemClock plus a settable skew, an Exec that counts
 * calls, driver subclasses whose apply() records its start/end time and size, and a hook on
 * Journal.prototype.stage that only remembers the daemon's journal, to read its fdatasync count.
 */
import { randomBytes } from 'node:crypto'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { pino } from 'pino'
import { parseConfig } from '../../src/config/load.js'
import { configSchema } from '../../src/config/schema.js'
import type { PeerSource } from '../../src/wireguard/peers.js'
import { clientAddress } from '../lib/clients.js'
import { startDaemon, type Daemon } from '../../src/daemon.js'
import type { ForwardDriver } from '../../src/drivers/driver.js'
import type { ForwardChange } from '../../src/core/forward.js'
import { IptablesDriver } from '../../src/drivers/iptables.js'
import { NftDriver } from '../../src/drivers/nft.js'
import { NftSession } from '../../src/drivers/nft-session.js'
import { Journal } from '../../src/state/journal.js'
import type { ChildProcess } from 'node:child_process'
import { systemExec, type Exec } from '../../src/core/exec.js'
import type { Cancel, Clock } from '../../src/core/clock.js'
import { nowMs, serve } from '../lib/rpc.js'

interface Batch {
  t0: number
  t1: number
  adds: number
  dels: number
  ok: boolean
}

const batches: Batch[] = []
const MAX_BATCH_RECORDS = 200_000
let tracking = false
/** `${op}:${protocol}/${port}` -> end time of the batch that carried it (only while tracking). */
const committed = new Map<string, number>()
const spawns = new Map<string, number>()
let onBatch: ((b: Batch) => void) | null = null

/** Resolves with the batches seen once deletes totalling `expect` are committed, or at timeout. */
async function watchDeletes(expect: number, timeoutMs: number): Promise<{ deleted: number; list: Batch[] }> {
  let deleted = 0
  let done: () => void = () => {}
  const finished = new Promise<void>((r) => (done = r))
  const list: Batch[] = []
  onBatch = (b) => {
    list.push(b)
    deleted += b.ok ? b.dels : 0
    if (deleted >= expect) done()
  }
  const t = setTimeout(done, timeoutMs)
  await finished
  clearTimeout(t)
  onBatch = null
  return { deleted, list }
}

function record(t0: number, changes: readonly ForwardChange[], ok: boolean): void {
  const t1 = nowMs()
  let adds = 0
  for (const c of changes) {
    if (c.op === 'add') adds++
    if (tracking && ok) committed.set(`${c.op}:${c.forward.protocol}/${c.forward.externalPort}`, t1)
  }
  const b = { t0, t1, adds, dels: changes.length - adds, ok }
  if (batches.length < MAX_BATCH_RECORDS) batches.push(b)
  onBatch?.(b)
}

/** Runs a driver's apply() and records its batch (time, size, outcome). */
async function timedApply(apply: () => Promise<void>, changes: readonly ForwardChange[]): Promise<void> {
  const t0 = nowMs()
  let ok = false
  try {
    await apply()
    ok = true
  } finally {
    if (changes.length > 0) record(t0, changes, ok)
  }
}

class TimedNftDriver extends NftDriver {
  override apply(changes: readonly ForwardChange[]): Promise<void> {
    return timedApply(() => super.apply(changes), changes)
  }
}

class TimedIptablesDriver extends IptablesDriver {
  override apply(changes: readonly ForwardChange[]): Promise<void> {
    return timedApply(() => super.apply(changes), changes)
  }
}

const countingExec: Exec = (file, args, options) => {
  const name = file === 'ip' ? `ip ${args.slice(0, 3).join(' ')}` : file
  spawns.set(name, (spawns.get(name) ?? 0) + 1)
  return systemExec(file, args, options)
}

/** systemClock plus a skew that jump() moves forward; pending timers due after a jump fire at once. */
class SkewClock implements Clock {
  skew = 0
  private readonly timers = new Map<number, { at: number; fn: () => void; t: NodeJS.Timeout }>()
  private nextId = 0
  wall(): number {
    return Date.now()
  }
  now(): number {
    return performance.now() + this.skew
  }
  setTimer(ms: number, fn: () => void): Cancel {
    const id = this.nextId++
    const t = setTimeout(
      () => {
        this.timers.delete(id)
        fn()
      },
      Math.max(0, ms),
    )
    t.unref()
    this.timers.set(id, { at: this.now() + Math.max(0, ms), fn, t })
    return () => {
      clearTimeout(t)
      this.timers.delete(id)
    }
  }
  jump(ms: number): void {
    this.skew += ms
    const now = this.now()
    for (const [id, x] of [...this.timers].sort((a, b) => a[1].at - b[1].at)) {
      if (x.at > now) continue
      clearTimeout(x.t)
      this.timers.delete(id)
      x.fn()
    }
  }
}

/**
 * What-if (bench --what-if=marker only; never in a normal run): the session's end-of-batch marker
 * `list tables` makes nft 1.0.x fetch every set element (O(N) per batch); `list flowtables`
 * needs no table and prints one JSON line just the same. Patches NftSession.run in this process
 * to measure the proposed fix without editing src/.
 */
function patchMarker(): void {
  const marker = JSON.stringify({ nftables: [{ list: { flowtables: null } }] })
  interface Internals {
    child: ChildProcess | null
    start(): ChildProcess
    pending: { resolve: (t: string) => void; reject: (e: Error) => void }[]
  }
  NftSession.prototype.run = function (this: NftSession, batchJson: string): Promise<string> {
    const s = this as unknown as Internals
    const child = s.child ?? s.start()
    return new Promise<string>((resolve, reject) => {
      s.pending.push({ resolve, reject })
      child.stdin?.write(batchJson + '\n' + marker + '\n')
    })
  }
}

/**
 * The daemon serves only WireGuard peers (`wg show wg0 dump`); wg0 here is a veth, so the bench
 * tells it the peers instead: one per client address, each with a fresh handshake at every read
 * (so none is ever "disconnected", even after the clock jump of the expiry phase).
 */
function benchPeers(from: number, to: number): PeerSource {
  const peers = Array.from({ length: to - from + 1 }, (_, k) => ({ address: clientAddress(from + k), key: randomBytes(32).toString('base64') }))
  let reads = 0
  return {
    refresh() {
      const handshake = Math.floor(Date.now() / 1000) + reads++
      return Promise.resolve(
        peers.map((p, i) => ({
          publicKey: p.key,
          hasPresharedKey: false,
          endpoint: `192.0.2.1:${10000 + (i % 50000)}`,
          allowedIps: [`${p.address}/32`],
          latestHandshake: handshake,
          rxBytes: 0,
          txBytes: 0,
          persistentKeepalive: 25,
        })),
      )
    },
  }
}

/** The daemon's journal, found at its first stage() (the Daemon does not expose it). Read-only use: `syncs`. */
let journal: Journal | null = null
// eslint-disable-next-line @typescript-eslint/unbound-method -- called with its own `this` below
const stage = Journal.prototype.stage
Journal.prototype.stage = function (this: Journal, ...a: Parameters<Journal['stage']>): void {
  // eslint-disable-next-line @typescript-eslint/no-this-alias -- the point: remember the instance
  journal = this
  stage.apply(this, a)
}

const clock = new SkewClock()
let daemon: Daemon | null = null
let driver: ForwardDriver | null = null
const loop = monitorEventLoopDelay({ resolution: 1 })

const gc = (globalThis as { gc?: () => void }).gc

async function memory(): Promise<Record<string, number>> {
  for (let i = 0; i < 4; i++) {
    gc?.()
    await new Promise((r) => setImmediate(r))
  }
  const m = process.memoryUsage()
  return {
    rss: m.rss,
    heapUsed: m.heapUsed,
    heapTotal: m.heapTotal,
    external: m.external,
    arrayBuffers: m.arrayBuffers,
    forwards: daemon?.table?.size ?? 0,
    gc: gc ? 1 : 0,
  }
}

serve(
  {
    async start(p: { config: Record<string, unknown>; logFile: string; whatIf?: string[]; peers: { from: number; to: number } }) {
      if (p.whatIf?.includes('marker')) patchMarker()
      // Keys this version of the schema does not know (the daemon moves fast) are dropped, and said.
      const known = new Set(Object.keys(configSchema.properties))
      const dropped = Object.keys(p.config).filter((k) => !known.has(k))
      const config = parseConfig(Object.fromEntries(Object.entries(p.config).filter(([k]) => known.has(k))), 'bench config')
      const log = pino({ level: config.log_level, base: { name: 'wgpmp' } }, pino.destination({ dest: p.logFile, sync: true }))
      driver =
        config.port_forward_driver === 'iptables'
          ? new TimedIptablesDriver({ exec: countingExec })
          : new TimedNftDriver({ exec: countingExec, mode: config.nft_mode })
      daemon = await startDaemon(config, { log, clock, exec: countingExec, driver, reservedPorts: [], peers: benchPeers(p.peers.from, p.peers.to) })
      loop.enable()
      return { udp: daemon.udpAddress, mode: driver.describe().mode ?? driver.name, pid: process.pid, droppedConfigKeys: dropped }
    },
    /** Starts or stops recording per-forward commit times; clears them. */
    track(p: { on: boolean }) {
      tracking = p.on
      committed.clear()
      return null
    },
    /** End time of the batch that committed op on protocol/port, or null. */
    committedAt(p: { op: 'add' | 'delete'; protocol: string; port: number }) {
      return committed.get(`${p.op}:${p.protocol}/${p.port}`) ?? null
    },
    /** Batches, spawns and event-loop delay since the last reset; batches ending after `since` only. */
    stats(p: { since?: number; reset?: boolean }) {
      const since = p.since ?? 0
      const bs = batches.filter((b) => b.t1 >= since)
      const out = {
        batches: bs.length,
        failed: bs.filter((b) => !b.ok).length,
        changes: bs.reduce((a, b) => a + b.adds + b.dels, 0),
        maxSize: bs.reduce((a, b) => Math.max(a, b.adds + b.dels), 0),
        busyMs: bs.reduce((a, b) => a + (b.t1 - b.t0), 0),
        durations: bs.map((b) => ({ size: b.adds + b.dels, ms: Math.round((b.t1 - b.t0) * 1000) / 1000 })).slice(-2000),
        spawns: Object.fromEntries(spawns),
        loopDelayMs: { p50: loop.percentile(50) / 1e6, p99: loop.percentile(99) / 1e6, max: loop.max / 1e6 },
        forwards: daemon?.table?.size ?? 0,
        /** fdatasyncs of the journal since the start (not reset). */
        journalSyncs: journal?.syncs ?? 0,
      }
      if (p.reset) {
        batches.length = 0
        spawns.clear()
        loop.reset()
      }
      return out
    },
    /** Moves the daemon's clock forward; resolves once deletes totalling `expect` are committed (or timeout). */
    async jump(p: { ms: number; expect: number; timeoutMs: number }) {
      const w = watchDeletes(p.expect, p.timeoutMs)
      const at = nowMs()
      clock.jump(p.ms)
      const afterTake = nowMs()
      const { deleted, list } = await w
      return { at, afterTake, doneAt: nowMs(), deleted, batches: list.map((b) => ({ t0: b.t0, t1: b.t1, dels: b.dels, adds: b.adds, ok: b.ok })) }
    },
    /** Resolves once deletes totalling `expect` are committed after now (real-clock expiry), or at timeout. */
    async waitDeletes(p: { expect: number; timeoutMs: number }) {
      const { deleted, list } = await watchDeletes(p.expect, p.timeoutMs)
      return { doneAt: nowMs(), deleted, batches: list.map((b) => ({ t0: b.t0, t1: b.t1, dels: b.dels, adds: b.adds, ok: b.ok })) }
    },
    memory,
    async close(p: { teardown: boolean }) {
      const t0 = nowMs()
      await daemon?.close({ teardown: p.teardown })
      daemon = null
      return { ms: nowMs() - t0 }
    },
  },
  async () => {
    await daemon?.close({ teardown: true })
  },
)
