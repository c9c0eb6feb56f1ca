/**
 * Diagnosis helper (`node --import tsx bench/diag-bulk.ts [N]`, root): how long deleting N forwards
 * (default 10,000) takes by path and strategy, without the daemon: through libnftables in-process
 * (the library mode), through one `nft -j -i` session, and through one `nft -j -f FILE`; as one
 * batch, or in chunks committed one after another. It creates a throwaway namespace
 * (wgpmp-bench-<random>-x) and runs itself again inside it (the library acts on its own
 * process's namespace), then removes it.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ForwardChange } from '../src/core/forward.js'
import { buildBatch } from '../src/drivers/nft-batch.js'
import { NftLib } from '../src/drivers/nft-lib.js'
import { NftDriver } from '../src/drivers/nft.js'
import { NftSession } from '../src/drivers/nft-session.js'
import { systemExec } from '../src/core/exec.js'

const N = Number(process.argv[2] ?? 10_000)
const fwd = (i: number): ForwardChange['forward'] => ({
  protocol: i % 2 ? 'udp' : 'tcp',
  externalPort: 1024 + (i >> 1),
  internalAddress: '10.8.128.9',
  internalPort: 1000 + (i % 50000),
})
const batch = (op: 'add' | 'delete', from: number, n: number): string =>
  JSON.stringify(buildBatch(Array.from({ length: n }, (_, k) => ({ op, forward: fwd(from + k) }))))

async function inside(): Promise<void> {
  await new NftDriver({ exec: systemExec, mode: 'spawn' }).ensureBase({ publicV4: ['198.51.100.1'], wgInterfaces: ['wg0'] })
  const lib = await NftLib.open()
  const session = new NftSession(['nft'], 1e9)
  const dir = mkdtempSync(join(tmpdir(), 'wgpmp-bench-diag-'))
  const ok = (e: string): void => {
    if (e) throw new Error(e)
  }
  const fill = async (): Promise<void> => {
    for (let i = 0; i < N; i += 5000) ok(await lib.run(batch('add', i, Math.min(5000, N - i))))
  }
  const chunked = (run: (json: string) => Promise<string>, c: number) => async (): Promise<void> => {
    for (let i = 0; i < N; i += c) ok(await run(batch('delete', i, Math.min(c, N - i))))
  }
  const spawnRun = (json: string): Promise<string> => {
    const file = join(dir, 'b.json')
    writeFileSync(file, json)
    const r = spawnSync('nft', ['-j', '-f', file], { encoding: 'utf8' })
    return Promise.resolve(r.status === 0 ? '' : r.stderr || 'nft failed')
  }
  const strategies: [string, () => Promise<void>][] = [
    ['library, one batch', chunked((j) => lib.run(j), N)],
    ['library, chunks of 250', chunked((j) => lib.run(j), 250)],
    ['session, one batch', chunked((j) => session.run(j), N)],
    ['session, chunks of 250', chunked((j) => session.run(j), 250)],
    ['spawn, one batch', chunked(spawnRun, N)],
  ]
  try {
    for (let rep = 1; rep <= 3; rep++) {
      const line: string[] = []
      for (const [name, fn] of strategies) {
        await fill()
        const t = performance.now()
        await fn()
        line.push(`${name} ${(performance.now() - t).toFixed(1)}`)
      }
      process.stdout.write(`delete ${N}, run ${rep}: ${line.join(' | ')} (ms)\n`)
    }
  } finally {
    session.close()
    await lib.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

function outside(): void {
  const ns = `wgpmp-bench-${randomBytes(3).toString('hex')}-x`
  execFileSync('ip', ['netns', 'add', ns])
  try {
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', fileURLToPath(import.meta.url), String(N)], {
      stdio: 'inherit',
      env: { ...process.env, WGPMP_DIAG_INSIDE: ns },
      timeout: 300_000,
    })
    process.exitCode = r.status ?? 1
  } finally {
    for (const pid of execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split(/\s+/).filter(Boolean)) process.kill(Number(pid), 'SIGKILL')
    execFileSync('ip', ['netns', 'del', ns])
  }
}

if (process.env.WGPMP_DIAG_INSIDE) {
  inside().catch((e: unknown) => {
    process.stderr.write(`${String(e)}\n`)
    process.exitCode = 1
  })
} else outside()
