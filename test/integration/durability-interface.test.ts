/**
 * Issue 10 §4, end to end: restarting the WireGuard configuration under a running daemon
 * (`wg setconf` re-creates every peer: all handshake times go back to 0, as after wg-quick
 * down/up or wg-easy's restart) withdrew every lease, and clients came back on new ports. A peer
 * still configured now keeps its leases; the forward still carries traffic.
 */
import { writeFile } from 'node:fs/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hasForward, nftForwards, serveTcp, sleep } from './e2e-tools.js'
import { isRoot, startLab, type Lab } from './lab.js'
import { talk } from './traffic.js'
import { labConfig, natpmpc, startWgpmp, type Wgpmp } from './wgpmp-proc.js'

describe.runIf(isRoot)('an interface restart is not a disconnection', () => {
  let lab: Lab
  let wgpmp: Wgpmp | undefined
  beforeAll(async () => {
    lab = await startLab()
  }, 150_000)
  afterAll(async () => {
    await wgpmp?.stop('SIGKILL')
    await lab?.down()
  }, 90_000)

  it('wg setconf (every handshake back to 0): leases stay, and still forward', async () => {
    wgpmp = await startWgpmp(lab, labConfig(lab, { peer_refresh_seconds: 1 }))
    const m = await natpmpc(lab, 'c1', ['-a', '40100', '9100', 'tcp', '3600'])
    expect(m.port).toBe(40100)
    const conf = (await lab.exec('srv', 'wg', ['showconf', lab.ifaces.srvWg])).stdout
    const file = `${lab.dir}/srv-wg.conf`
    await writeFile(file, conf + '\n', { mode: 0o600 })
    await lab.exec('srv', 'wg', ['setconf', lab.ifaces.srvWg, file])
    const hs = (await lab.exec('srv', 'wg', ['show', lab.ifaces.srvWg, 'latest-handshakes'])).stdout
    console.log(`handshakes after setconf:\n${hs}`)
    await sleep(3_500) // three refreshes
    expect(wgpmp.lines.filter((l) => l.msg === 'leases withdrawn' || l.msg === 'peer disconnected')).toEqual([])
    expect(hasForward(await nftForwards(lab), 'tcp', 40100)).toBe(true)
    await serveTcp(lab, 'c1', lab.ips.c1, 9100, 'c1-svc')
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 40100)).toBe(`c1-svc ${lab.ips.inet}`)
  }, 90_000)
})
