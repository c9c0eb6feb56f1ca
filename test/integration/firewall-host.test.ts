/**
 * A host firewall that drops forwarded traffic, as ufw with DEFAULT_FORWARD_POLICY=DROP sets it up
 * (iptables-nft, FORWARD policy DROP, an ESTABLISHED accept in ufw-before-forward), in the lab's
 * server namespace: the daemon detects it (one warning with the rule, /api/host, the metric) and a
 * forward times out; with host_firewall_accept the daemon inserts the accept, the forward carries
 * traffic, and on exit exactly that rule is removed (ufw's own rules and policy stay).
 */
import { chmod, writeFile } from 'node:fs/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isRoot, startLab, type Lab } from './lab.js'
import { listen, talk } from './traffic.js'
import { labConfig, natpmpc, startWgpmp, type Wgpmp } from './wgpmp-proc.js'

const TOKEN = 'firewall-test-token-0123456789abcdef'
const API_PORT = 5399
const FIX = 'iptables -I FORWARD -m conntrack --ctstate DNAT -j ACCEPT'

describe.runIf(isRoot)('host firewall: a ufw-style FORWARD DROP is detected, then fixed by host_firewall_accept', () => {
  let lab: Lab
  let wgpmp: Wgpmp | undefined
  const ipt = async (...args: string[]): Promise<string> => (await lab.exec('srv', 'iptables', ['-w', '5', ...args])).stdout
  const curl = async (path: string): Promise<string> =>
    (await lab.exec('srv', 'curl', ['-sS', '--max-time', '5', '-H', `Authorization: Bearer ${TOKEN}`, `http://127.0.0.1:${API_PORT}${path}`])).stdout

  beforeAll(async () => {
    lab = await startLab()
    await ipt('-P', 'FORWARD', 'DROP')
    await ipt('-N', 'ufw-before-forward')
    await ipt('-A', 'FORWARD', '-j', 'ufw-before-forward')
    await ipt('-A', 'ufw-before-forward', '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT')
    await ipt('-A', 'ufw-before-forward', '-p', 'icmp', '-m', 'icmp', '--icmp-type', '8', '-j', 'ACCEPT')
    // The tunnel's own traffic out (as ufw route rules or wg-easy's PostUp allow it): -i wg0 only.
    await ipt('-A', 'FORWARD', '-i', lab.ifaces.srvWg, '-j', 'ACCEPT')
    const tokenFile = `${lab.dir}/api-token`
    await writeFile(tokenFile, `${TOKEN}\n`, { mode: 0o600 })
    await chmod(tokenFile, 0o600)
    await listen(lab, 'c1', 'tcp', lab.ips.c1, 8080, 'c1-web')
  })
  afterAll(async () => {
    await wgpmp?.stop()
    await lab?.down()
  })

  const config = (accept: boolean) =>
    labConfig(lab, {
      port_forward_min_port: 20000,
      port_forward_max_port: 20100,
      api_token_file: `${lab.dir}/api-token`,
      api_listen: `127.0.0.1:${API_PORT}`,
      host_firewall_accept: accept,
      state_file: `${lab.dir}/state-${accept}.json`,
    })

  it('detects the drop: one warning with the exact rule, /api/host, the metric; the forward times out', async () => {
    wgpmp = await startWgpmp(lab, config(false), 'detect')
    const warn = await wgpmp.waitLog(/^host firewall drops forwarded traffic/)
    expect(warn).toMatchObject({ fix: [FIX], chains: [{ backend: 'iptables', chain: 'ip filter FORWARD', packet: 'inbound', by: 'policy drop' }] })
    expect(JSON.parse(await curl('/api/host'))).toMatchObject({ host_firewall: { blocks_forwards: true, fix: [FIX], inserted: [] } })
    expect(await curl('/metrics')).toMatch(/^wgpmp_host_firewall_blocks_forwards 1$/m)
    const r = await natpmpc(lab, 'c1', ['-a', '20010', '8080', 'tcp', '3600'])
    expect(r.port).toBe(20010)
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20010)).toBe('')
    expect(await ipt('-S', 'FORWARD')).not.toContain('DNAT')
    expect(wgpmp.lines.filter((l) => String(l.msg).startsWith('host firewall drops')).length).toBe(1)
    expect(await wgpmp.stop()).toBe(0)
    wgpmp = undefined
  })

  it('host_firewall_accept inserts the accept: the forward carries traffic; the metric is 0', async () => {
    wgpmp = await startWgpmp(lab, config(true), 'accept')
    await wgpmp.waitLog('host firewall: accept rule for forwarded traffic inserted (host_firewall_accept)')
    expect(await ipt('-S', 'FORWARD')).toContain('-A FORWARD -m conntrack --ctstate DNAT -m comment --comment wgpmp-host-firewall-accept -j ACCEPT')
    expect(wgpmp.lines.filter((l) => String(l.msg).startsWith('host firewall drops'))).toEqual([])
    expect(await curl('/metrics')).toMatch(/^wgpmp_host_firewall_blocks_forwards 0$/m)
    const r = await natpmpc(lab, 'c1', ['-a', '20011', '8080', 'tcp', '3600'])
    expect(r.port).toBe(20011)
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20011)).toBe(`c1-web ${lab.ips.inet}`)
  })

  it("on exit exactly that rule is removed; ufw's policy and rules stay", async () => {
    const before = (await ipt('-S')).split('\n').filter((l) => !l.includes('wgpmp-host-firewall-accept'))
    expect(await wgpmp!.stop()).toBe(0)
    wgpmp = undefined
    expect((await ipt('-S')).split('\n')).toEqual(before)
    expect(before).toContain('-P FORWARD DROP')
  })
})
