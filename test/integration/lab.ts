/** Network-namespace lab for integration tests: a typed wrapper around scripts/lab.sh (topology in its header). */
import { execFileSync } from 'node:child_process'
import { randomInt } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { execa, type Options, type ResultPromise } from 'execa'

/** The lab needs root (namespaces, nft, tun). Integration suites use `describe.runIf(isRoot)`. */
export const isRoot = process.getuid?.() === 0

export const LAB_SCRIPT = fileURLToPath(new URL('../../scripts/lab.sh', import.meta.url))

export type LabNs = 'srv' | 'c1' | 'c2' | 'inet'

/** Exit code of `lab.sh up` when something of that ID exists already (and nothing was touched). */
const EXIT_EXISTS = 3
const ID_RE = /^[a-z0-9]{1,6}$/
const ID_CHARS = 'abcdefghijklmnopqrstuvwxyz0123456789'
const UP_TIMEOUT_MS = 120_000
const DOWN_TIMEOUT_MS = 60_000
/** Default bound for `lab.exec`; pass `timeout` to change it. */
const EXEC_TIMEOUT_MS = 30_000
const KILL_GRACE_MS = 3_000

type NoOptions = Record<never, never>

export interface Lab {
  /** 1-6 chars [a-z0-9]; every namespace, WireGuard interface and temp path contains it. */
  readonly id: string
  /** /tmp/wgpmp-lab-ID: keys, pids, `env`. Removed by down(). */
  readonly dir: string
  /** Namespace names: wgpmp-srv-ID, wgpmp-c1-ID, wgpmp-c2-ID, wgpmp-inet-ID. */
  readonly ns: Readonly<Record<LabNs, string>>
  /** srvPublic is `eth0` in the server namespace; the others are WireGuard interfaces. */
  readonly ifaces: { readonly srvPublic: string; readonly srvWg: string; readonly c1Wg: string; readonly c2Wg: string }
  readonly ips: {
    /** The server's public address, 198.51.100.1 (forwards are for this address). */
    readonly public: string
    /** The internet host, 198.51.100.254: outside the tunnel. */
    readonly inet: string
    /** The server's WireGuard address, 10.8.0.1 (where NAT-PMP is answered). */
    readonly wgSrv: string
    readonly c1: string
    readonly c2: string
    /** Client underlay (non-tunnel) addresses, 192.0.2.2 and 192.0.2.6. */
    readonly c1Underlay: string
    readonly c2Underlay: string
    /** The server's public IPv6 address, 2001:db8:100::1 (NAT66 source of c1's outgoing IPv6). */
    readonly public6: string
    /** The internet host's IPv6 address, 2001:db8:100::254. */
    readonly inet6: string
    /** The server's WireGuard ULA address, fd42:42::1 (prefix fd42:42::/64, env WG_PREFIX6). */
    readonly wgSrv6: string
    /** The server's WireGuard global address, 2001:db8:200::1 (prefix 2001:db8:200::/64, env GLOBAL_PREFIX6, routed by inet). */
    readonly wgSrvGlobal6: string
    /** c1's IPv6 address, fd42:42::2: ULA only, masqueraded (NAT66) out the server's eth0. */
    readonly c1v6: string
    /** c2's IPv6 address, 2001:db8:200::3: global, reachable from inet without NAT. */
    readonly c2v6: string
  }
  /** The server's WireGuard listen port (51820). */
  readonly wgPort: number
  /** WireGuard public keys (base64), as `wg show dump` prints them. */
  readonly pubkeys: { readonly srv: string; readonly c1: string; readonly c2: string }
  /** Pids of the wireguard-go processes. */
  readonly wgPids: { readonly srv: number; readonly c1: number; readonly c2: number }
  /** Every variable of /tmp/wgpmp-lab-ID/env, raw. */
  readonly env: Readonly<Record<string, string>>
  /**
   * Runs `file args` in namespace `ns` (`ip netns exec`) and resolves with execa's result; rejects
   * on a non-zero exit unless `reject: false`. Bounded: `timeout` defaults to 30 s.
   */
  exec<O extends Options = NoOptions>(ns: LabNs, file: string, args?: readonly string[], opts?: O): ResultPromise<O>
  /**
   * Starts a long-running `file args` in namespace `ns` (listener, daemon, …) and returns the
   * execa subprocess: kill it yourself, or down() kills it by pid. Awaiting it rejects if it was
   * killed; not awaiting it is fine (the rejection is handled here).
   */
  spawn<O extends Options = NoOptions>(ns: LabNs, file: string, args?: readonly string[], opts?: O): ResultPromise<O>
  /**
   * Kills the spawned processes by pid (TERM, then KILL after 3 s), then runs `lab.sh down ID`.
   * Idempotent; never rejects. Also runs on process exit and on SIGINT/SIGTERM/SIGHUP.
   */
  down(): Promise<void>
}

export interface WaitForOptions {
  /** Give up after this long (default 10 s). */
  readonly timeoutMs?: number
  /** Pause between attempts (default 100 ms). */
  readonly intervalMs?: number
  /** Named in the timeout error. */
  readonly what?: string
}

/**
 * Polls `fn` until it returns something other than false/null/undefined without throwing, and
 * resolves with that value. Rejects after `timeoutMs` with the last thrown error as `cause`.
 * Always calls `fn` at least once.
 */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  { timeoutMs = 10_000, intervalMs = 100, what = 'condition' }: WaitForOptions = {},
): Promise<Exclude<T, false | null | undefined>> {
  const deadline = performance.now() + timeoutMs
  let lastError: unknown
  let attempts = 0
  for (;;) {
    attempts++
    try {
      const value = await fn()
      if (value !== false && value !== null && value !== undefined) return value as Exclude<T, false | null | undefined>
      lastError = undefined
    } catch (err) {
      lastError = err
    }
    const left = deadline - performance.now()
    if (left <= 0) break
    await new Promise((resolve) => setTimeout(resolve, Math.min(intervalMs, left)))
  }
  throw new Error(`waitFor: ${what} not met after ${timeoutMs} ms (${attempts} attempts)`, { cause: lastError })
}

// ----------------------------------------------------------------------------- cleanup on exit --

interface Owned {
  readonly id: string
  readonly children: Set<ResultPromise>
  /** Set by the first down(); later calls wait for the same teardown. */
  downing?: Promise<void>
}

/** Labs this process built and has not taken down yet. */
const live = new Map<string, Owned>()
let hooksInstalled = false

const running = (c: ResultPromise): boolean => c.pid !== undefined && c.exitCode === null && c.signalCode === null

function killPid(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return
  try {
    process.kill(pid, signal)
  } catch {
    // already gone
  }
}

/** Synchronous teardown of every live lab: the only kind that works in an 'exit' handler. */
function downAllSync(): void {
  for (const owned of live.values()) {
    for (const c of owned.children) if (running(c)) killPid(c.pid, 'SIGKILL')
    try {
      execFileSync('bash', [LAB_SCRIPT, 'down', owned.id], { stdio: 'ignore', timeout: DOWN_TIMEOUT_MS })
    } catch {
      // best effort: the process is exiting
    }
  }
  live.clear()
}

function onSignal(signal: NodeJS.Signals): void {
  downAllSync()
  process.removeListener(signal, onSignal)
  // If nobody else handles it, behave as if we had never listened: die of the signal.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
}

function installHooks(): void {
  if (hooksInstalled) return
  hooksInstalled = true
  process.once('exit', downAllSync)
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(s, onSignal)
}

// ------------------------------------------------------------------------------------ startLab --

function randomId(): string {
  let id = ''
  for (let i = 0; i < 5; i++) id += ID_CHARS[randomInt(ID_CHARS.length)]
  return id
}

/** Parses `KEY='value'` lines (comments and blank lines skipped). */
export function parseLabEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const m = /^([A-Z][A-Z0-9_]*)='([^']*)'$/.exec(line.trim())
    if (m?.[1] !== undefined && m[2] !== undefined) env[m[1]] = m[2]
  }
  return env
}

function need(env: Record<string, string>, key: string): string {
  const v = env[key]
  if (v === undefined || v === '') throw new Error(`lab env: ${key} is missing`)
  return v
}

function needInt(env: Record<string, string>, key: string): number {
  const n = Number(need(env, key))
  if (!Number.isInteger(n) || n <= 0) throw new Error(`lab env: ${key} is not a positive integer`)
  return n
}

/**
 * Builds a lab with `scripts/lab.sh up ID` and returns a handle. `id` defaults to 5 random
 * characters (retried up to 3 times if taken). Rejects if not root, if `id` is malformed, if a
 * lab with that `id` exists (it is left alone), or if the build fails (lab.sh has then removed
 * what it built; the error carries its output).
 */
export async function startLab(id?: string): Promise<Lab> {
  if (!isRoot) throw new Error('startLab: needs root')
  if (id !== undefined && !ID_RE.test(id)) throw new Error(`startLab: bad id '${id}': want 1-6 characters [a-z0-9]`)
  installHooks()
  const tries = id === undefined ? 3 : 1
  for (let attempt = 1; ; attempt++) {
    const labId = id ?? randomId()
    const up = await execa('bash', [LAB_SCRIPT, 'up', labId], {
      all: true,
      reject: false,
      timeout: UP_TIMEOUT_MS,
      env: { LC_ALL: 'C' },
    })
    if (up.exitCode === 0) return await makeLab(labId)
    if (up.exitCode === EXIT_EXISTS && attempt < tries) continue
    // Killed (timeout): its trap ran on TERM, but make sure. Never for EXIT_EXISTS: not ours.
    if (up.exitCode !== EXIT_EXISTS) await execa('bash', [LAB_SCRIPT, 'down', labId], { reject: false, timeout: DOWN_TIMEOUT_MS })
    throw new Error(`startLab: lab.sh up ${labId} failed (${up.exitCode ?? up.signal ?? 'timeout'}):\n${up.all}`)
  }
}

async function makeLab(id: string): Promise<Lab> {
  const owned: Owned = { id, children: new Set() }
  live.set(id, owned)
  const dir = `/tmp/wgpmp-lab-${id}`
  let env: Record<string, string>
  try {
    env = parseLabEnv(await readFile(`${dir}/env`, 'utf8'))
    need(env, 'NS_SRV') // fail early on a truncated file
  } catch (err) {
    await (owned.downing ??= downLab(owned))
    throw err
  }
  const ns: Record<LabNs, string> = {
    srv: need(env, 'NS_SRV'),
    c1: need(env, 'NS_C1'),
    c2: need(env, 'NS_C2'),
    inet: need(env, 'NS_INET'),
  }
  const inNs = (name: LabNs, file: string, args: readonly string[]): string[] => ['netns', 'exec', ns[name], file, ...args]

  return {
    id,
    dir,
    ns,
    ifaces: { srvPublic: need(env, 'SRV_PUBLIC_IF'), srvWg: need(env, 'WG_SRV'), c1Wg: need(env, 'WG_C1'), c2Wg: need(env, 'WG_C2') },
    ips: {
      public: need(env, 'PUBLIC_IP'),
      inet: need(env, 'INET_IP'),
      wgSrv: need(env, 'WG_SRV_IP'),
      c1: need(env, 'C1_IP'),
      c2: need(env, 'C2_IP'),
      c1Underlay: need(env, 'C1_UNDERLAY_IP'),
      c2Underlay: need(env, 'C2_UNDERLAY_IP'),
      public6: need(env, 'PUBLIC_IP6'),
      inet6: need(env, 'INET_IP6'),
      wgSrv6: need(env, 'WG_SRV_IP6'),
      wgSrvGlobal6: need(env, 'WG_SRV_GLOBAL6'),
      c1v6: need(env, 'C1_IP6'),
      c2v6: need(env, 'C2_IP6'),
    },
    wgPort: needInt(env, 'WG_PORT'),
    pubkeys: { srv: need(env, 'WG_SRV_PUBKEY'), c1: need(env, 'WG_C1_PUBKEY'), c2: need(env, 'WG_C2_PUBKEY') },
    wgPids: { srv: needInt(env, 'WG_SRV_PID'), c1: needInt(env, 'WG_C1_PID'), c2: needInt(env, 'WG_C2_PID') },
    env,
    exec<O extends Options = NoOptions>(name: LabNs, file: string, args: readonly string[] = [], opts?: O): ResultPromise<O> {
      // `timeout` is merged in, so the declared option type is the caller's.
      return execa('ip', inNs(name, file, args), { timeout: EXEC_TIMEOUT_MS, ...opts } as O) as unknown as ResultPromise<O>
    },
    spawn<O extends Options = NoOptions>(name: LabNs, file: string, args: readonly string[] = [], opts?: O): ResultPromise<O> {
      if (!live.has(id)) throw new Error(`lab ${id} is down`)
      // `ip netns exec` execs the command, so the pid is the command's own.
      const child = execa('ip', inNs(name, file, args), opts ?? ({} as O)) as unknown as ResultPromise<O>
      const tracked = child as unknown as ResultPromise
      owned.children.add(tracked)
      void child.then(
        () => owned.children.delete(tracked),
        () => owned.children.delete(tracked),
      )
      return child
    },
    down: () => (owned.downing ??= downLab(owned)),
  }
}

async function downLab(owned: Owned): Promise<void> {
  if (live.get(owned.id) !== owned) return // already taken down (also by the exit hook)
  const kids = [...owned.children].filter(running)
  for (const c of kids) killPid(c.pid, 'SIGTERM')
  try {
    await waitFor(() => kids.every((c) => !running(c)), { timeoutMs: KILL_GRACE_MS, intervalMs: 50, what: 'spawned processes to exit' })
  } catch {
    for (const c of kids) if (running(c)) killPid(c.pid, 'SIGKILL')
  }
  await execa('bash', [LAB_SCRIPT, 'down', owned.id], { reject: false, timeout: DOWN_TIMEOUT_MS })
  live.delete(owned.id)
}
