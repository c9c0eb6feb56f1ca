/**
 * Issue 10 §2, end to end: a success reply is a promise. Two WireGuard clients (four concurrent
 * senders each) storm new mappings; the daemon is killed -9 at 10 random moments and restarted
 * each time with the kernel table deleted (as after a reboot). After every restart each mapping
 * acknowledged so far must be forwarded again, on the same port to the same target (the whole
 * table is checked); at the end a sample is checked with real traffic from the internet host.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sleep } from './e2e-tools.js'
import { isRoot, startLab, type Lab } from './lab.js'
import { talk } from './traffic.js'
import { prng, serveTcp } from './e2e-tools.js'
import { startWgpmp, type Wgpmp } from './wgpmp-proc.js'
import { kernelForwards, lostMappings, startStorm, stormConfig, type Storm } from './durability-storm.js'

describe.runIf(isRoot)('durability: kill -9 during a storm of new mappings', () => {
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

  it('every mapping acknowledged before a kill is forwarded again on the same port after the restart', async () => {
    const seed = Number(process.env.WGPMP_SEED ?? Date.now() % 100_000)
    const rnd = prng(seed)
    const config = stormConfig(lab)
    wgpmp = await startWgpmp(lab, config)
    storms.push(startStorm(lab, 'c1', { base: 20000, per: 4000 }), startStorm(lab, 'c2', { base: 20000, per: 4000 })) // 32,000 at most: enough for all 10 kills
    const lostAll: string[] = []
    let checked = 0
    for (let k = 0; k < 10; k++) {
      await sleep(250 + Math.floor(rnd() * 1000))
      expect(await wgpmp.stop('SIGKILL')).toBeNull()
      wgpmp = undefined
      await sleep(30) // the last replies' acks through the pipes
      const acked = storms.map((s) => ({ client: s.client, acks: new Map(s.acks) }))
      await lab.exec('srv', 'nft', ['delete', 'table', 'inet', 'wgpmp'], { reject: false }) // as after a reboot
      wgpmp = await startWgpmp(lab, config)
      const kernel = await kernelForwards(lab)
      const lost = lostMappings(acked, kernel)
      checked = acked.reduce((n, s) => n + s.acks.size, 0)
      console.log(`kill ${k + 1}: acknowledged ${checked}, lost ${lost.length}, kernel forwards ${kernel.size}`)
      lostAll.push(...lost.map((l) => `kill ${k + 1}: ${l}`))
    }
    for (const s of storms) s.stop()
    console.log(`durability (seed ${seed}): acknowledged ${checked}, lost ${new Set(lostAll.map((l) => l.replace(/^kill \d+: /, ''))).size}`)
    expect(lostAll.slice(0, 20)).toEqual([])
    expect(checked).toBeGreaterThan(500)

    // Real traffic through a sample of acknowledged TCP mappings, from the internet host.
    const sample = storms.flatMap((s, i) =>
      [...s.acks]
        .filter(([k]) => k.startsWith('tcp '))
        .slice(0, 1000)
        .filter(() => rnd() < 0.01)
        .slice(0, 2)
        .map(([k, ext]) => ({ ns: i === 0 ? ('c1' as const) : ('c2' as const), client: s.client, internal: Number(k.split(' ')[1]), ext })),
    )
    expect(sample.length).toBeGreaterThan(0)
    for (const m of sample) {
      await serveTcp(lab, m.ns, m.client, m.internal, `${m.ns}-${m.internal}`)
      expect(await talk(lab, 'inet', 'tcp', lab.ips.public, m.ext)).toBe(`${m.ns}-${m.internal} ${lab.ips.inet}`)
    }
  }, 120_000)
})
