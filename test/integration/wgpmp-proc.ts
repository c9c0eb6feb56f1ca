/** Runs the built daemon (dist/src/main.js) inside the lab's server namespace, as an operator would. */
import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { execa } from 'execa'
import type { ConfigInput } from '../../src/config/schema.js'
import { waitFor, type Lab } from './lab.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const MAIN = `${ROOT}dist/src/main.js`

/** Calls onLine for each complete line of a child's stdout, parsed as JSON, or with `fallback(line)` if it is not JSON. */
export function jsonLines<T>(stream: NodeJS.ReadableStream | null | undefined, onLine: (value: T) => void, fallback: (line: string) => T): void {
  let rest = ''
  stream?.setEncoding('utf8')
  stream?.on('data', (chunk: string) => {
    rest += chunk
    const parts = rest.split('\n')
    rest = parts.pop() ?? ''
    for (const p of parts) {
      try {
        onLine(JSON.parse(p) as T)
      } catch {
        onLine(fallback(p))
      }
    }
  })
}

/** Builds dist/ once if it is missing (npm test builds before running; this covers `vitest run` alone). */
export async function ensureBuilt(): Promise<void> {
  if (!existsSync(MAIN)) await execa('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: ROOT })
}

export interface Wgpmp {
  readonly pid: number
  readonly configFile: string
  /** Parsed JSON log lines so far. */
  readonly lines: Record<string, unknown>[]
  /** Waits for a log line whose msg matches. */
  waitLog(msg: string | RegExp, timeoutMs?: number): Promise<Record<string, unknown>>
  /** Sends a signal and waits for the exit; resolves with the exit code (null if killed). */
  stop(signal?: NodeJS.Signals): Promise<number | null>
}

/** The lab's server config: WireGuard interface and address, eth0 public; `over` wins. */
export function labConfig(lab: Lab, over: ConfigInput = {}): ConfigInput {
  return {
    port_forward_enabled: true,
    wg_interface: lab.ifaces.srvWg,
    wg_address_v4: `${lab.ips.wgSrv}/24`,
    public_interface: lab.ifaces.srvPublic,
    log_level: 'debug',
    state_file: `${lab.dir}/state.json`,
    // The suites reuse one lab (and client) across tests that each assert the port they suggested;
    // a port held from an earlier test would be handed back instead (issue 10 §3, which
    // durability-port-hold.test.ts proves with port_hold_seconds on).
    port_hold_seconds: 0,
    ...over,
  }
}

/**
 * The node that runs the daemon: WGPMP_TEST_NODE when set (e.g. Debian 12's node 18 from
 * scripts/node18.sh, so the whole suite can run on the oldest supported runtime), else `node`.
 */
export const TEST_NODE = process.env.WGPMP_TEST_NODE || 'node'

/** How to run the daemon: a command and the arguments before `--config FILE` (default: TEST_NODE dist/src/main.js). */
export interface WgpmpCommand {
  readonly file: string
  readonly args: readonly string[]
}

export async function startWgpmp(lab: Lab, config: ConfigInput, name = 'config', command?: WgpmpCommand): Promise<Wgpmp> {
  if (!command) await ensureBuilt()
  const configFile = `${lab.dir}/${name}.json`
  await writeFile(configFile, JSON.stringify(config, null, 2))
  const { file, args } = command ?? { file: TEST_NODE, args: [MAIN] }
  // No forced SIGKILL 5 s after a SIGTERM (execa's default): stop() bounds the wait itself and says so.
  const child = lab.spawn('srv', file, [...args, '--config', configFile], { reject: false, buffer: false, forceKillAfterDelay: false })
  const lines: Record<string, unknown>[] = []
  jsonLines<Record<string, unknown>>(
    child.stdout,
    (l) => lines.push(l),
    (p) => ({ msg: p }),
  )
  let stderr = ''
  child.stderr?.setEncoding('utf8')
  child.stderr?.on('data', (c: string) => (stderr += c))
  let exitCode: number | null | undefined
  const exited = child.then((r) => (exitCode = r.exitCode ?? null))
  const waitLog = (msg: string | RegExp, timeoutMs = 10_000) =>
    waitFor(
      () => {
        if (exitCode !== undefined) throw new Error(`wgpmp exited (${exitCode}): ${stderr}`)
        return lines.find((l) => (typeof msg === 'string' ? l.msg === msg : msg.test(String(l.msg))))
      },
      { timeoutMs, what: `log line ${String(msg)}` },
    )
  await waitLog('NAT-PMP listening')
  return {
    pid: child.pid!,
    configFile,
    lines,
    waitLog,
    async stop(signal = 'SIGTERM') {
      if (exitCode === undefined) child.kill(signal)
      const t0 = performance.now()
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))])
      const slow = lines.filter((l) => l.msg === 'a component is slow to close')
      if (slow.length > 0)
        process.stderr.write(`wgpmp took ${Math.round(performance.now() - t0)} ms to stop after ${signal}: ${slow.map((l) => JSON.stringify(l)).join(' ')}\n`)
      if (exitCode === undefined)
        process.stderr.write(
          `wgpmp did not exit 10 s after ${signal}; its last log lines:\n${lines
            .slice(-15)
            .map((l) => JSON.stringify(l))
            .join('\n')}\n`,
        )
      return exitCode ?? null
    },
  }
}

/** natpmpc (Debian's libnatpmp client) from a lab client; returns its output and the mapped port. */
export async function natpmpc(lab: Lab, ns: 'c1' | 'c2', args: readonly string[]): Promise<{ out: string; port: number | null; ok: boolean }> {
  const r = await lab.exec(ns, 'natpmpc', ['-g', lab.ips.wgSrv, ...args], { reject: false, timeout: 20_000 })
  const out = `${r.stdout}\n${r.stderr}`
  const m = /Mapped public port (\d+) protocol (?:TCP|UDP) to local port (\d+)/.exec(out)
  return { out, port: m ? Number(m[1]) : null, ok: r.exitCode === 0 }
}
