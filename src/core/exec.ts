/**
 * Exec: the one module that starts processes, so tests can script them. systemExec runs a program
 * to its end (nft, iptables, wg, conntrack); systemSpawn starts a long-lived one with pipes (the
 * `nft -i` session, `nft monitor`). Nothing else in src/ imports node:child_process or execa
 * (test/unit/core/exec.test.ts checks).
 */
import { spawn } from 'node:child_process'
import type { Readable, Writable } from 'node:stream'
import { execa } from 'execa'
import { WgpmpError } from './errors.js'

export interface ExecResult {
  readonly stdout: string
  readonly stderr: string
  readonly exitCode: number
}

/** Runs file with args, stdin = input. Resolves for any exit code; rejects only if it cannot start. */
export type Exec = (file: string, args: readonly string[], options?: { input?: string }) => Promise<ExecResult>

export const systemExec: Exec = async (file, args, options) => {
  const r = await execa(file, args, {
    input: options?.input ?? '',
    reject: false,
    env: { LC_ALL: 'C' },
    stripFinalNewline: true,
  })
  if (r.failed && r.exitCode === undefined) {
    const missing = (r.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT'
    throw new WgpmpError(
      missing ? 'WGPMP_EXEC_MISSING' : 'WGPMP_EXEC_FAILED',
      missing ? `${file}: command not found (install it, e.g. apt-get install ${file === 'nft' ? 'nftables' : file})` : `${file}: ${r.shortMessage}`,
      { cause: r.cause },
    )
  }
  return { stdout: String(r.stdout), stderr: String(r.stderr), exitCode: r.exitCode ?? 1 }
}

/** A long-lived child process with pipes (nft -i, nft monitor): what the drivers use of it. */
export interface ChildHandle {
  readonly pid?: number | undefined
  /** Its stdin, when started with stdin: 'pipe'. */
  readonly stdin: Writable | null
  readonly stdout: Readable | null
  kill(signal?: NodeJS.Signals): boolean
  on(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): unknown
  on(event: 'error', listener: (err: Error) => void): unknown
  once(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): unknown
  once(event: 'error', listener: (err: Error) => void): unknown
}

export interface SpawnOptions {
  /** 'pipe' to write to it; default 'ignore'. */
  readonly stdin?: 'pipe' | 'ignore'
  /** Default 'ignore'. */
  readonly stderr?: 'inherit' | 'ignore'
}

/**
 * Starts file with args and returns at once; stdout is always a pipe. Never throws for a missing
 * program: the child emits 'error' (ENOENT), then nothing else. The environment is this
 * process's with LC_ALL=C, as for systemExec.
 */
export type Spawn = (file: string, args: readonly string[], options?: SpawnOptions) => ChildHandle

export const systemSpawn: Spawn = (file, args, options) =>
  spawn(file, args, {
    stdio: [options?.stdin ?? 'ignore', 'pipe', options?.stderr ?? 'ignore'],
    env: { ...process.env, LC_ALL: 'C' },
  })

export interface HookResult {
  /** null when killed by a signal (or the timeout). */
  readonly exitCode: number | null
  readonly timedOut: boolean
  /** The first 2,000 characters of stderr. */
  readonly stderr: string
}

/**
 * Runs an operator's hook: argv without a shell, `input` on stdin, an environment of exactly `env`
 * (nothing inherited), stdout ignored; killed (SIGKILL, by its pid) past timeoutMs. Resolves for
 * any exit; rejects only if the program cannot start (WGPMP_EXEC_MISSING / WGPMP_EXEC_FAILED).
 */
export async function runHook(
  file: string,
  args: readonly string[],
  o: { input: string; env: Record<string, string>; timeoutMs: number },
): Promise<HookResult> {
  const r = await execa(file, args, {
    input: o.input,
    env: o.env,
    extendEnv: false,
    timeout: o.timeoutMs,
    killSignal: 'SIGKILL',
    reject: false,
    stdout: 'ignore',
    shell: false,
  })
  if (r.failed && r.exitCode === undefined && !r.timedOut && r.signal === undefined) {
    const missing = (r.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT'
    throw new WgpmpError(missing ? 'WGPMP_EXEC_MISSING' : 'WGPMP_EXEC_FAILED', `${file}: ${missing ? 'command not found' : r.shortMessage}`, { cause: r.cause })
  }
  return { exitCode: r.exitCode ?? null, timedOut: r.timedOut, stderr: String(r.stderr ?? '').slice(0, 2000) }
}
