/**
 * Issue 10 §3, end to end: a natpmpc client lets its lease lapse and comes back asking for another
 * port: it gets its old port back (held for port_hold_seconds), also after a restart of the daemon;
 * another client asking for that port does not get it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hasForward, nftForwards, sleep } from './e2e-tools.js'
import { isRoot, startLab, waitFor, type Lab } from './lab.js'
import { labConfig, natpmpc, startWgpmp, type Wgpmp } from './wgpmp-proc.js'

describe.runIf(isRoot)('a client keeps its port', () => {
  let lab: Lab
  let wgpmp: Wgpmp | undefined
  beforeAll(async () => {
    lab = await startLab()
  }, 150_000)
  afterAll(async () => {
    await wgpmp?.stop('SIGKILL')
    await lab?.down()
  }, 90_000)

  it('natpmpc: lapse, come back suggesting another port, same port; again across a restart', async () => {
    const config = labConfig(lab, { lifetime_min_seconds: 2, port_hold_seconds: 3600 })
    wgpmp = await startWgpmp(lab, config)
    const first = await natpmpc(lab, 'c1', ['-a', '40000', '9000', 'tcp', '2'])
    expect(first.port).toBe(40000)
    await waitFor(async () => !hasForward(await nftForwards(lab), 'tcp', 40000), { timeoutMs: 8_000, what: 'the lease to lapse' })
    // Another client wants that port: held for c1, so it gets another one.
    const other = await natpmpc(lab, 'c2', ['-a', '40000', '9000', 'tcp', '60'])
    expect(other.ok).toBe(true)
    expect(other.port).not.toBe(40000)
    const back = await natpmpc(lab, 'c1', ['-a', '41000', '9000', 'tcp', '2'])
    expect(back.port).toBe(40000)
    // Lapse again, then restart the daemon: the hold survives it.
    await waitFor(async () => !hasForward(await nftForwards(lab), 'tcp', 40000), { timeoutMs: 8_000, what: 'the lease to lapse again' })
    expect(await wgpmp.stop('SIGTERM')).toBe(0)
    wgpmp = await startWgpmp(lab, config)
    await sleep(100)
    const afterRestart = await natpmpc(lab, 'c1', ['-a', '42000', '9000', 'tcp', '60'])
    expect(afterRestart.port).toBe(40000)
  }, 90_000)
})
