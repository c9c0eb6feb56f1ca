/** Exec: the one way wgpmp runs a program (nft, iptables, wg), so tests can script it. */
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
    throw new WgpmpError(missing ? 'WGPMP_EXEC_MISSING' : 'WGPMP_EXEC_FAILED',
      missing ? `${file}: command not found (install it, e.g. apt-get install ${file === 'nft' ? 'nftables' : file})` : `${file}: ${r.shortMessage}`,
      { cause: r.cause })
  }
  return { stdout: String(r.stdout), stderr: String(r.stderr), exitCode: r.exitCode ?? 1 }
}
