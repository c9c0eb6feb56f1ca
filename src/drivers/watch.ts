/**
 * TableWatch: notices when someone deletes or flushes wgpmp's table (`nft flush ruleset`, a
 * firewall reload, `nft delete table inet wgpmp`, `nft flush table inet wgpmp`) and calls onLost,
 * so the daemon rebuilds it.
 *
 * Two detectors, because either alone can miss:
 * - at once: a child `nft -j monitor rules`. Deleting or flushing our table, or flushing the
 *   ruleset, deletes our rules, and nft 1.0.6 prints one line per deleted rule, e.g.
 *   `{"delete": {"rule": {"family": "inet", "table": "wgpmp", "chain": "prerouting", ...}}}`.
 *   Forwards are set elements, not rules, so they print nothing. A delete is only a hint: the
 *   watch then checks, because our own ensureBase() deletes and re-adds the table in one
 *   transaction and the monitor shows that too. If the monitor dies it is restarted with bounded
 *   backoff.
 * - periodically (default every 5 s), and right after each hint or monitor death. The full check
 *   is `nft -j list chain inet wgpmp prerouting`: "No such file or directory" means the table is
 *   gone, and a chain with no rule means it was flushed. nft 1.0.6 loads every set element to list
 *   a chain (45 ms at 10,000 forwards, 400 ms at 50,000), so the full check always runs in an `nft`
 *   process, never on the daemon's libnftables queue. While the monitor runs, the periodic check
 *   is the light one when `listChains` is given: `list chains` (0.4 ms) only sees the chain gone.
 * Either way onLost runs at most once at a time; events during it only cause one check after it.
 *
 * The daemon must stop() the watch before its own teardown() (which deletes the table).
 */
import type { Readable } from 'node:stream'
import { systemSpawn, type Exec, type ExecResult } from '../core/exec.js'
import type { Logger } from '../log.js'
import { repeat, type Cancel, type Clock } from '../core/clock.js'
import type { LostReason, TableWatcher } from './driver.js'
import { nftErrorCode, TABLE_FAMILY, TABLE_NAME } from './nft-batch.js'

export const DEFAULT_WATCH_INTERVAL_MS = 5000
export const DEFAULT_MONITOR_BACKOFF = { initialMs: 500, maxMs: 30_000 } as const
/** A monitor that ran this long resets the backoff: it was a one-off death, not a crash loop. */
export const MONITOR_HEALTHY_MS = 60_000
/** Longest monitor output line kept; a longer one is discarded (bounded memory). */
const MAX_LINE = 64 * 1024
const STOP_GRACE_MS = 2000
/** A base chain of the table that always has rules. */
const PROBE_CHAIN = 'prerouting'

export type { LostReason } from './driver.js'

/** The part of a child process the watch uses (core/exec's ChildHandle satisfies it; tests fake it). */
export interface MonitorProcess {
  readonly pid?: number | undefined
  readonly stdout: Readable | null
  kill(signal?: NodeJS.Signals): boolean
  once(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): unknown
  once(event: 'error', listener: (err: Error) => void): unknown
}

export type SpawnMonitor = (file: string, args: readonly string[]) => MonitorProcess

/**
 * Does this `nft -j monitor` line report the deletion of family/table, or of one of its rules
 * (a flush)? Never throws.
 */
export function isLossEvent(line: string, family: string = TABLE_FAMILY, table: string = TABLE_NAME): boolean {
  let ev: unknown
  try {
    ev = JSON.parse(line)
  } catch {
    return false
  }
  const del = (ev as { delete?: { table?: { family?: unknown; name?: unknown }; rule?: { family?: unknown; table?: unknown } } } | null)?.delete
  if (del?.table) return del.table.family === family && del.table.name === table
  if (del?.rule) return del.rule.family === family && del.rule.table === table
  return false
}

/** Interprets `nft -j list chains`: does family/table have this chain? (null if the output is not nft JSON). Never throws. */
export function hasChain(json: string, family: string, table: string, chain: string): boolean | null {
  try {
    const doc = JSON.parse(json) as { nftables?: unknown }
    if (!Array.isArray(doc.nftables)) return null
    return doc.nftables.some((o) => {
      const c = (o as { chain?: { family?: unknown; table?: unknown; name?: unknown } } | null)?.chain
      return c?.family === family && c.table === table && c.name === chain
    })
  } catch {
    return null
  }
}

/** Interprets `nft -j list chain …`: how many rules the chain has (null if the output is not nft JSON). Never throws. */
export function countRules(json: string): number | null {
  try {
    const doc = JSON.parse(json) as { nftables?: unknown }
    if (!Array.isArray(doc.nftables)) return null
    return doc.nftables.filter((o) => o !== null && typeof o === 'object' && 'rule' in o).length
  } catch {
    return null
  }
}

export interface TableWatchOptions {
  /** Runs the full check, `nft -j list chain` (and the light one if listChains is not given). */
  exec: Exec
  /**
   * `nft -j list chains`, for the light periodic check while the monitor runs (the daemon passes
   * the nft driver's, which asks libnftables in-process). Without it every check is the full one.
   */
  listChains?: () => Promise<ExecResult>
  clock: Clock
  log: Logger
  /** Called when the table is gone or emptied; awaited before the watch checks again. Errors are logged. */
  onLost: (reason: LostReason) => void | Promise<void>
  /** argv that runs nft, e.g. ['ip','netns','exec','ns','nft'] (default ['nft']). */
  nftArgv?: readonly string[]
  /** Our table in family inet (default "wgpmp"; the nft driver passes its own). */
  table?: string
  /** Periodic check (ms). Default 5000. */
  intervalMs?: number
  /** Monitor restart delay: initialMs doubling up to maxMs. */
  backoff?: { initialMs: number; maxMs: number }
  spawn?: SpawnMonitor
}

export class TableWatch implements TableWatcher {
  private readonly o: Required<Omit<TableWatchOptions, 'log' | 'onLost' | 'exec' | 'clock' | 'listChains'>>
  private child: MonitorProcess | null = null
  private childStartedAt = 0
  private consecutiveDeaths = 0
  private periodic: Cancel | null = null
  private respawn: Cancel | null = null
  private running = false
  private checking: Promise<void> | null = null
  private recheck = false
  private lostCount = 0
  private restartCount = 0

  constructor(private readonly d: TableWatchOptions) {
    this.o = {
      nftArgv: d.nftArgv ?? ['nft'],
      table: d.table ?? TABLE_NAME,
      intervalMs: d.intervalMs ?? DEFAULT_WATCH_INTERVAL_MS,
      backoff: d.backoff ?? DEFAULT_MONITOR_BACKOFF,
      spawn: d.spawn ?? ((file, args) => systemSpawn(file, args)),
    }
  }

  /** Times onLost was called. */
  get losses(): number {
    return this.lostCount
  }

  /** Times the monitor was restarted after dying. */
  get monitorRestarts(): number {
    return this.restartCount
  }

  /** The PID of the running `nft monitor`, if any. */
  get monitorPid(): number | undefined {
    return this.child?.pid
  }

  /** Starts the monitor and the periodic check. Call after the table is installed. Idempotent. */
  start(): void {
    if (this.running) return
    this.running = true
    this.startMonitor()
    this.armPeriodic()
  }

  /** Stops both detectors, kills the monitor (SIGTERM, then SIGKILL after 2 s) and waits for a check in flight. Idempotent. */
  async stop(): Promise<void> {
    this.running = false
    this.periodic?.()
    this.periodic = null
    this.respawn?.()
    this.respawn = null
    const child = this.child
    this.child = null
    if (child) await killAndWait(child, this.d.clock)
    await this.checking
  }

  /**
   * Checks the table now: fully (what monitor events and deaths call), or lightly if asked and
   * possible (the periodic check while the monitor runs). Resolves when done, onLost included.
   */
  check(light = false): Promise<void> {
    if (this.checking) {
      this.recheck ||= !light
      return this.checking
    }
    const run = async (): Promise<void> => {
      try {
        // Bounded: each extra round needs an event that arrived during the previous one.
        let full = !light
        for (let round = 0; round < 3 && this.running; round++) {
          this.recheck = false
          const reason = full || !this.d.listChains ? await this.probe() : await this.probeLight(this.d.listChains)
          if (reason) await this.lost(reason)
          if (!this.recheck) break
          full = true
        }
      } finally {
        this.checking = null
      }
    }
    this.checking = run()
    return this.checking
  }

  /** `list chains`: sees the table or its probe chain gone, not a flush. */
  private async probeLight(listChains: () => Promise<ExecResult>): Promise<LostReason | null> {
    try {
      const r = await listChains()
      if (r.exitCode === 0) return hasChain(r.stdout, TABLE_FAMILY, this.o.table, PROBE_CHAIN) === false ? 'missing' : null
      this.d.log.warn({ stderr: r.stderr, exitCode: r.exitCode }, 'table check failed')
    } catch (err) {
      this.d.log.warn({ err }, 'table check could not list chains')
    }
    return null
  }

  private async probe(): Promise<LostReason | null> {
    const [file = 'nft', ...pre] = this.o.nftArgv
    try {
      const r = await this.d.exec(file, [...pre, '-j', 'list', 'chain', TABLE_FAMILY, this.o.table, PROBE_CHAIN])
      if (r.exitCode === 0) return countRules(r.stdout) === 0 ? 'flushed' : null
      if (nftErrorCode(r.stderr) === 'WGPMP_FORWARD_MISSING') return 'missing'
      this.d.log.warn({ stderr: r.stderr, exitCode: r.exitCode }, 'table check failed')
    } catch (err) {
      this.d.log.warn({ err }, 'table check could not run nft')
    }
    return null
  }

  private async lost(reason: LostReason): Promise<void> {
    this.lostCount++
    this.d.log.warn({ reason, family: TABLE_FAMILY, table: this.o.table, losses: this.lostCount }, 'nftables table lost; rebuilding')
    try {
      await this.d.onLost(reason)
    } catch (err) {
      this.d.log.error({ err, reason }, 'rebuilding the table failed; the next check retries')
    }
  }

  private armPeriodic(): void {
    if (this.running) this.periodic = repeat(this.d.clock, this.o.intervalMs, () => this.check(this.child !== null))
  }

  private startMonitor(): void {
    if (!this.running) return
    const [file = 'nft', ...pre] = this.o.nftArgv
    let child: MonitorProcess
    try {
      child = this.o.spawn(file, [...pre, '-j', 'monitor', 'rules'])
    } catch (err) {
      this.d.log.warn({ err }, 'cannot start nft monitor')
      this.monitorDied()
      return
    }
    this.child = child
    this.childStartedAt = this.d.clock.now()
    let buf = ''
    child.stdout?.setEncoding('utf8')
    child.stdout?.on('data', (chunk: string) => {
      buf += chunk
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        if (isLossEvent(line, TABLE_FAMILY, this.o.table)) {
          this.d.log.debug({ line }, 'nft monitor: a rule of our table was deleted')
          void this.check()
        }
      }
      if (buf.length > MAX_LINE) buf = ''
    })
    let ended = false
    const end = (why: unknown): void => {
      if (ended) return
      ended = true
      if (this.child !== child) return // stopped, or replaced
      this.child = null
      this.d.log.warn({ why, pid: child.pid }, 'nft monitor ended; checking the table and restarting it')
      void this.check()
      this.monitorDied()
    }
    child.once('error', (err) => end(err.message))
    child.once('exit', (code, signal) => end(signal ?? code))
  }

  private monitorDied(): void {
    if (!this.running) return
    if (this.d.clock.now() - this.childStartedAt >= MONITOR_HEALTHY_MS) this.consecutiveDeaths = 0
    const delay = Math.min(this.o.backoff.maxMs, this.o.backoff.initialMs * 2 ** this.consecutiveDeaths)
    this.consecutiveDeaths = Math.min(this.consecutiveDeaths + 1, 30)
    this.respawn = this.d.clock.setTimer(delay, () => {
      this.respawn = null
      this.restartCount++
      this.startMonitor()
    })
  }
}

/** Kills a child by its PID and waits for it to exit: SIGTERM, then SIGKILL after a grace period. */
async function killAndWait(child: MonitorProcess, clock: Clock): Promise<void> {
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve())
    child.once('error', () => resolve())
  })
  if (!child.kill('SIGTERM')) return // already gone
  let cancel: Cancel = () => {}
  const grace = new Promise<'timeout'>((resolve) => {
    cancel = clock.setTimer(STOP_GRACE_MS, () => resolve('timeout'))
  })
  if ((await Promise.race([exited, grace])) === 'timeout') {
    child.kill('SIGKILL')
    await Promise.race([exited, new Promise<void>((resolve) => clock.setTimer(STOP_GRACE_MS, resolve))])
  }
  cancel()
}
