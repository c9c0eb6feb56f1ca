/**
 * The daemon on Debian 12's own Node.js 18 (the `nodejs` package bookworm ships, unpacked beside the
 * system one by scripts/node18.sh): a real natpmpc forward carries TCP and UDP traffic, the nft
 * library mode (koffi) runs, and SIGTERM removes the table. The whole end-to-end suite can also run
 * on it: WGPMP_TEST_NODE=$(scripts/node18.sh) npx vitest run --project integration.
 */
import { readlink } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { execa } from 'execa'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isRoot, startLab, type Lab } from './lab.js'
import { listen, talk } from './traffic.js'
import { labConfig, MAIN, natpmpc, startWgpmp, type Wgpmp } from './wgpmp-proc.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

describe.runIf(isRoot)("wgpmp on Debian 12's node 18", () => {
  let node18: string
  let lab: Lab
  let wgpmp: Wgpmp

  beforeAll(async () => {
    const r = await execa('bash', [`${ROOT}scripts/node18.sh`], { cwd: ROOT, timeout: 300_000 })
    node18 = r.stdout.trim().split('\n').pop()!
    lab = await startLab()
    wgpmp = await startWgpmp(lab, labConfig(lab, { port_forward_min_port: 20000, port_forward_max_port: 20100 }), 'config', { file: node18, args: [MAIN] })
    await listen(lab, 'c1', 'tcp', lab.ips.c1, 8080, 'c1-web')
    await listen(lab, 'c1', 'udp', lab.ips.c1, 9001, 'c1-udp')
  }, 300_000)
  afterAll(async () => {
    await wgpmp?.stop()
    await lab?.down()
  })

  it("the daemon process is Debian's node 18, not the system node", async () => {
    expect((await execa(node18, ['--version'])).stdout).toMatch(/^v18\./)
    // ip netns exec, unshare and sh all exec: the daemon's pid is the node binary itself.
    const exe = await readlink(`/proc/${wgpmp.pid}/exe`)
    expect(exe).toMatch(/\.cache\/node18\/root\/usr\/bin\/node$/)
  })

  it('a TCP forward carries real traffic, through libnftables in the daemon (koffi)', async () => {
    expect(await wgpmp.waitLog('forwarding base installed')).toMatchObject({ driver: 'nft', mode: 'library' })
    const r = await natpmpc(lab, 'c1', ['-a', '20010', '8080', 'tcp', '3600'])
    expect(r.port).toBe(20010)
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20010)).toBe(`c1-web ${lab.ips.inet}`)
  })

  it('a UDP forward carries real traffic', async () => {
    const r = await natpmpc(lab, 'c1', ['-a', '20011', '9001', 'udp', '3600'])
    expect(r.port).toBe(20011)
    expect(await talk(lab, 'inet', 'udp', lab.ips.public, 20011)).toBe(`c1-udp ${lab.ips.inet}`)
  })

  it('SIGTERM removes every forward and the table', async () => {
    expect(await wgpmp.stop('SIGTERM')).toBe(0)
    expect((await lab.exec('srv', 'nft', ['list', 'tables'])).stdout).not.toContain('wgpmp')
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20010)).toBe('')
  })
})
