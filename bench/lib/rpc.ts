/**
 * Line-delimited JSON RPC between the bench orchestrator and its agents (one process per network
 * namespace, started with `ip netns exec NS node --import tsx ...`). The child's stdout carries
 * only RPC lines; its logs go to stderr. A child exits when its stdin closes, so an orchestrator
 * that dies takes its agents with it.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'

/** Monotonic milliseconds (CLOCK_MONOTONIC): comparable between processes on one machine. */
export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6

interface Wire {
  id: number
  m?: string
  p?: unknown
  r?: unknown
  e?: string
}

/** Every agent this process started, by PID, so cleanup can stop exactly those. */
export const startedPids = new Set<number>()

export class Agent {
  private nextId = 1
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>()
  private exited: Promise<void>
  private dead: Error | null = null

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
  ) {
    const rl = createInterface({ input: child.stdout! })
    rl.on('line', (line) => {
      let msg: Wire
      try {
        msg = JSON.parse(line) as Wire
      } catch {
        process.stderr.write(`[${name}] ${line}\n`)
        return
      }
      const p = this.pending.get(msg.id)
      if (!p) return
      this.pending.delete(msg.id)
      clearTimeout(p.timer)
      if (msg.e !== undefined) p.reject(new Error(`${name}: ${msg.e}`))
      else p.resolve(msg.r)
    })
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        if (child.pid !== undefined) startedPids.delete(child.pid)
        this.dead = new Error(`${name} exited (${signal ?? code})`)
        for (const [, p] of this.pending) {
          clearTimeout(p.timer)
          p.reject(this.dead)
        }
        this.pending.clear()
        resolve()
      })
    })
  }

  /** Starts `ip netns exec ns node [nodeArgs] --import tsx script` with cwd = the repo root. */
  static start(name: string, ns: string, script: string, opts: { nodeArgs?: readonly string[]; cwd: string; stderr?: number | 'inherit' }): Agent {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, ...(opts.nodeArgs ?? []), '--import', 'tsx', script], {
      cwd: opts.cwd,
      stdio: ['pipe', 'pipe', opts.stderr ?? 'inherit'],
      env: { ...process.env, LC_ALL: 'C' },
    })
    if (child.pid !== undefined) startedPids.add(child.pid)
    child.stdin?.on('error', () => {})
    return new Agent(name, child)
  }

  get pid(): number | undefined {
    return this.child.pid
  }

  call<T>(m: string, p: unknown = {}, timeoutMs = 60_000): Promise<T> {
    if (this.dead) return Promise.reject(this.dead)
    const id = this.nextId++
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`${this.name}.${m}: no answer in ${timeoutMs} ms`))
      }, timeoutMs)
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer })
      this.child.stdin?.write(JSON.stringify({ id, m, p }) + '\n')
    })
  }

  /** Closes stdin (the agent exits by itself), then SIGTERM, then SIGKILL, by PID. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.dead) return
    this.child.stdin?.end()
    const timeout = (ms: number): Promise<'timeout'> => new Promise((r) => setTimeout(() => r('timeout'), ms).unref())
    if ((await Promise.race([this.exited.then(() => 'ok' as const), timeout(graceMs)])) === 'ok') return
    this.child.kill('SIGTERM')
    if ((await Promise.race([this.exited.then(() => 'ok' as const), timeout(3000)])) === 'ok') return
    this.child.kill('SIGKILL')
    await Promise.race([this.exited, timeout(3000)])
  }
}

export type Handlers = Record<string, (p: never) => unknown>

/** Child side: answers RPC lines on stdin; exits (after onClose) when stdin ends. */
export function serve(handlers: Handlers, onClose: () => Promise<void> | void = () => {}): void {
  const out = (w: Wire): void => void process.stdout.write(JSON.stringify(w) + '\n')
  const rl = createInterface({ input: process.stdin })
  rl.on('line', (line) => {
    let msg: Wire
    try {
      msg = JSON.parse(line) as Wire
    } catch {
      return
    }
    const h = msg.m === undefined ? undefined : handlers[msg.m]
    if (!h) {
      out({ id: msg.id, e: `unknown method ${msg.m ?? ''}` })
      return
    }
    Promise.resolve()
      .then(() => h(msg.p as never))
      .then(
        (r) => out({ id: msg.id, r: r ?? null }),
        (e: unknown) => out({ id: msg.id, e: e instanceof Error ? (e.stack ?? e.message) : String(e) }),
      )
  })
  rl.on('close', () => {
    void Promise.resolve()
      .then(onClose)
      .catch(() => {})
      .finally(() => process.exit(0))
  })
}
