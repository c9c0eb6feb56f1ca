/**
 * Issue 10 §7, end to end: `systemctl stop` while clients are mapping. SIGTERM five times during a
 * two-client storm: every stop exits 0 (no crash from a reply on the closed socket), leaves no
 * nftables table behind, and the next start restores every mapping acknowledged before the stop.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sleep } from './e2e-tools.js'
import { isRoot, startLab, type Lab } from './lab.js'
import { labConfig, MAIN, startWgpmp, TEST_NODE, type Wgpmp } from './wgpmp-proc.js'
import { kernelForwards, lostMappings, startStorm, stormConfig, type Storm } from './durability-storm.js'

describe.runIf(isRoot)('a stop under load is a clean stop', () => {
  let lab: Lab
  let wgpmp: Wgpmp | undefined
  const storms: Storm[] = []
  beforeAll(async () => {
    lab = await startLab()
  }, 150_000)
  afterAll(async () => {
    for (const s of storms) s.stop()
    await wgpmp?.stop('SIGKILL')
    await lab?.down()
  }, 90_000)

  it('five SIGTERMs during a storm: exit 0, no table left, every acknowledged mapping restored by the next start', async () => {
    const config = stormConfig(lab)
    wgpmp = await startWgpmp(lab, config)
    storms.push(startStorm(lab, 'c1', { base: 20000, waitMs: 100, gapMs: 0 }), startStorm(lab, 'c2', { base: 20000, waitMs: 100, gapMs: 0 }))
    const codes: (number | null)[] = []
    const tablesLeft: boolean[] = []
    const lostAll: string[] = []
    let acknowledged = 0
    for (let k = 0; k < 5; k++) {
      await sleep(400 + k * 150)
      codes.push(await wgpmp.stop('SIGTERM'))
      wgpmp = undefined
      await sleep(30)
      const acked = storms.map((s) => ({ client: s.client, acks: new Map(s.acks) }))
      acknowledged = acked.reduce((n, s) => n + s.acks.size, 0)
      tablesLeft.push((await lab.exec('srv', 'nft', ['list', 'table', 'inet', 'wgpmp'], { reject: false })).exitCode === 0)
      wgpmp = await startWgpmp(lab, config)
      const lost = lostMappings(acked, await kernelForwards(lab))
      console.log(`stop ${k + 1}: exit ${codes[k]}, table left ${tablesLeft[k]}, acknowledged ${acknowledged}, lost ${lost.length}`)
      lostAll.push(...lost)
    }
    for (const s of storms) s.stop()
    expect(codes).toEqual([0, 0, 0, 0, 0])
    expect(tablesLeft).toEqual([false, false, false, false, false])
    expect(lostAll.slice(0, 20)).toEqual([])
    expect(acknowledged).toBeGreaterThan(200)
  }, 120_000)

  it('a SIGTERM while the daemon is still starting waits for the start and stops cleanly (exit 0, no table left)', async () => {
    const { writeFile } = await import('node:fs/promises')
    await wgpmp?.stop('SIGKILL') // the storm test's last daemon, if it failed before stopping it
    wgpmp = undefined
    const codes: (number | null)[] = []
    const tablesLeft: boolean[] = []
    for (let k = 0; k < 3; k++) {
      const file = `${lab.dir}/config-early-${k}.json`
      await writeFile(file, JSON.stringify(labConfig(lab, { log_level: 'info', state_file: `${lab.dir}/state-early.json` })))
      const child = lab.spawn('srv', TEST_NODE, [MAIN, '--config', file], { reject: false, buffer: false, forceKillAfterDelay: false })
      // Mid-start: the table is installed ('forwarding base installed'), the sockets are not up yet.
      let out = ''
      const based = new Promise<void>((resolve) => {
        child.stdout?.setEncoding('utf8')
        child.stdout?.on('data', (c: string) => {
          out += c
          if (out.includes('forwarding base installed')) resolve()
        })
      })
      await Promise.race([based, sleep(15_000)])
      child.kill('SIGTERM')
      const r = await Promise.race([child, sleep(15_000).then(() => null)])
      if (r === null) child.kill('SIGKILL')
      codes.push(r === null ? null : (r.exitCode ?? null))
      if (r?.exitCode !== 0) process.stderr.write(`early stop ${k}: exit ${r?.exitCode ?? 'none'}; output tail:\n${out.slice(-3000)}\n`)
      tablesLeft.push((await lab.exec('srv', 'nft', ['list', 'table', 'inet', 'wgpmp'], { reject: false })).exitCode === 0)
    }
    expect(codes).toEqual([0, 0, 0])
    expect(tablesLeft).toEqual([false, false, false])
  }, 90_000)
})
