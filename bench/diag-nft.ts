/**
 * Diagnosis helper (`node --import tsx bench/diag-nft.ts [N...]`, root): the cost of one nft
 * round trip alone, without the daemon, at N elements in the forwards maps, in a throwaway
 * namespace (wgpmp-bench-<random>-x). Times, per N: a one-forward batch through the session
 * (`nft -j -i`, what the daemon does), the marker line alone (`list tables`), the same batch
 * through `nft -j -f FILE` (spawn mode), and a plain `nft list tables` spawn.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildBatch } from '../src/drivers/nft-batch.js'
import { NftDriver } from '../src/drivers/nft.js'
import { NftSession } from '../src/drivers/nft-session.js'
import { systemExec } from '../src/core/exec.js'
import type { ForwardChange } from '../src/core/forward.js'
import { summarize } from './lib/stats.js'

const ns = `wgpmp-bench-${randomBytes(3).toString('hex')}-x`
const levels = process.argv
  .slice(2)
  .map(Number)
  .filter((n) => n >= 0)
const N = levels.length > 0 ? levels : [0, 1000, 10_000, 50_000]
const now = (): number => performance.now()

const fwd = (i: number): ForwardChange => ({
  op: 'add',
  forward: { protocol: i % 2 ? 'udp' : 'tcp', externalPort: 1024 + (i >> 1), internalAddress: '10.8.128.9', internalPort: 1000 + (i % 50000) },
})

async function main(): Promise<void> {
  execFileSync('ip', ['netns', 'add', ns])
  const dir = mkdtempSync(join(tmpdir(), 'wgpmp-bench-diag-'))
  try {
    const argv = ['ip', 'netns', 'exec', ns, 'nft']
    const driver = new NftDriver({ exec: systemExec, mode: 'spawn', nftArgv: argv })
    await driver.ensureBase({ publicV4: ['198.51.100.1'], wgInterfaces: ['wg0'] })
    const session = new NftSession(argv)
    await session.run(JSON.stringify({ nftables: [{ list: { tables: null } }] }))
    let have = 0
    for (const n of N) {
      for (let i = have; i < n; i += 5000) {
        const chunk = Array.from({ length: Math.min(5000, n - i) }, (_, k) => fwd(i + k))
        const e = await session.run(JSON.stringify(buildBatch(chunk)))
        if (e) throw new Error(e)
      }
      have = Math.max(have, n)
      const probe: ForwardChange = { op: 'add', forward: { protocol: 'tcp', externalPort: 65000, internalAddress: '10.8.128.10', internalPort: 80 } }
      const del: ForwardChange = { op: 'delete', forward: probe.forward }
      const add1 = JSON.stringify(buildBatch([probe]))
      const del1 = JSON.stringify(buildBatch([del]))
      const sAdd: number[] = []
      const sDel: number[] = []
      const sMarker: number[] = []
      for (let k = 0; k < 30; k++) {
        let t = now()
        if (await session.run(add1)) throw new Error('add failed')
        sAdd.push(now() - t)
        t = now()
        if (await session.run(del1)) throw new Error('delete failed')
        sDel.push(now() - t)
        t = now()
        await session.run(JSON.stringify({ nftables: [{ list: { tables: null } }] }))
        sMarker.push(now() - t)
      }
      const spawnAdd: number[] = []
      const spawnList: number[] = []
      const file = join(dir, 'b.json')
      for (let k = 0; k < 10; k++) {
        writeFileSync(file, add1)
        let t = now()
        const r = spawnSync('ip', ['netns', 'exec', ns, 'nft', '-j', '-f', file])
        spawnAdd.push(now() - t)
        if (r.status !== 0) throw new Error(String(r.stderr))
        writeFileSync(file, del1)
        spawnSync('ip', ['netns', 'exec', ns, 'nft', '-j', '-f', file])
        t = now()
        spawnSync('ip', ['netns', 'exec', ns, 'nft', 'list', 'tables'])
        spawnList.push(now() - t)
      }
      const p = (x: number[]): string => {
        const s = summarize(x)
        return `p50 ${s.p50.toFixed(3)} p90 ${s.p90.toFixed(3)}`
      }
      process.stdout.write(
        `N=${n}: session add ${p(sAdd)} | session delete ${p(sDel)} | marker only (list tables) ${p(sMarker)} | spawn nft -j -f add ${p(spawnAdd)} | spawn nft list tables ${p(spawnList)} (ms)\n`,
      )
    }
    session.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
    for (const pid of execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split(/\s+/).filter(Boolean)) process.kill(Number(pid), 'SIGKILL')
    execFileSync('ip', ['netns', 'del', ns])
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${String(e)}\n`)
  process.exitCode = 1
})
