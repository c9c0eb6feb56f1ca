/**
 * The daemon end to end: a real WireGuard server (wireguard-go) running wgpmp with the nft driver,
 * two WireGuard clients using Debian's natpmpc, and an "internet" namespace sending real traffic.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isRoot, startLab, waitFor, type Lab } from './lab.js'
import { listen, talk } from './traffic.js'
import { labConfig, natpmpc, startWgpmp, type Wgpmp } from './wgpmp-proc.js'

describe.runIf(isRoot)('wgpmp end to end (nft driver, WireGuard, natpmpc)', () => {
  let lab: Lab
  let wgpmp: Wgpmp
  const nftList = async (): Promise<string> => (await lab.exec('srv', 'nft', ['list', 'map', 'inet', 'wgpmp', 'forwards_v4'], { reject: false })).stdout

  beforeAll(async () => {
    lab = await startLab()
    wgpmp = await startWgpmp(lab, labConfig(lab, { port_forward_min_port: 20000, port_forward_max_port: 20100, lifetime_min_seconds: 2 }))
    await listen(lab, 'c1', 'tcp', lab.ips.c1, 8080, 'c1-web')
    await listen(lab, 'c1', 'udp', lab.ips.c1, 9001, 'c1-udp')
    await listen(lab, 'c2', 'tcp', lab.ips.c2, 8080, 'c2-web')
    await listen(lab, 'inet', 'tcp', lab.ips.inet, 20050, 'inet-web')
  })
  afterAll(async () => {
    await wgpmp?.stop()
    await lab?.down()
  })

  it('reports the public address to a client', async () => {
    const r = await natpmpc(lab, 'c1', [])
    expect(r.out).toContain(`Public IP address : ${lab.ips.public}`)
  })

  it('a TCP forward carries real traffic from the internet to the client', async () => {
    // The default mode runs: batches go to libnftables inside the daemon, nothing fell back.
    expect(await wgpmp.waitLog('forwarding base installed')).toMatchObject({ driver: 'nft', mode: 'library' })
    expect(wgpmp.lines.filter((l) => l.msg === 'driver: a slower mode than asked for runs')).toEqual([])
    const r = await natpmpc(lab, 'c1', ['-a', '20010', '8080', 'tcp', '3600'])
    expect(r.port).toBe(20010)
    expect(await nftList()).toContain(`tcp . 20010 : ${lab.ips.c1} . 8080`)
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20010)).toBe(`c1-web ${lab.ips.inet}`)
  })

  it('a UDP forward carries real traffic, and the reply comes back', async () => {
    const r = await natpmpc(lab, 'c1', ['-a', '20011', '9001', 'udp', '3600'])
    expect(r.port).toBe(20011)
    expect(await talk(lab, 'inet', 'udp', lab.ips.public, 20011)).toBe(`c1-udp ${lab.ips.inet}`)
  })

  it('auto-assigns a port in range when the client asks for public port 0', async () => {
    const r = await natpmpc(lab, 'c2', ['-a', '0', '8080', 'tcp', '3600'])
    expect(r.port).toBeGreaterThanOrEqual(20000)
    expect(r.port).toBeLessThanOrEqual(20100)
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, r.port!)).toBe(`c2-web ${lab.ips.inet}`)
  })

  it("a second client is denied the first one's port and cannot delete it", async () => {
    const r = await natpmpc(lab, 'c2', ['-a', '20010', '7000', 'tcp', '3600'])
    expect(r.port).not.toBeNull()
    expect(r.port).not.toBe(20010)
    // c2 deletes "its" mapping of internal 8080 and then all its TCP mappings: c1's stays.
    await natpmpc(lab, 'c2', ['-a', '20010', '8080', 'tcp', '0'])
    await natpmpc(lab, 'c2', ['-a', '0', '0', 'tcp', '0'])
    expect(await nftList()).toContain(`tcp . 20010 : ${lab.ips.c1} . 8080`)
    expect(await nftList()).not.toContain(lab.ips.c2)
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20010)).toBe(`c1-web ${lab.ips.inet}`)
  })

  it("a client's own outgoing connection to an internet host on a forwarded port is not hijacked", async () => {
    const r = await natpmpc(lab, 'c1', ['-a', '20050', '8081', 'tcp', '3600'])
    expect(r.port).toBe(20050)
    // c1 -> 198.51.100.254:20050 goes to the internet host, not back into the forward.
    expect(await talk(lab, 'c1', 'tcp', lab.ips.inet, 20050)).toBe(`inet-web ${lab.ips.public}`)
  })

  it('deleting a mapping (lifetime 0) removes the forward and traffic stops', async () => {
    const r = await natpmpc(lab, 'c1', ['-a', '20010', '8080', 'tcp', '0'])
    expect(r.ok).toBe(true)
    expect(await nftList()).not.toContain('tcp . 20010 ')
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20010)).toBe('')
  })

  it('a short lease expires and its forward disappears', async () => {
    const r = await natpmpc(lab, 'c1', ['-a', '20020', '8080', 'tcp', '2'])
    expect(r.port).toBe(20020)
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20020)).toBe(`c1-web ${lab.ips.inet}`)
    await waitFor(async () => !(await nftList()).includes('tcp . 20020 '), { timeoutMs: 6_000, what: 'lease to expire' })
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20020)).toBe('')
    await wgpmp.waitLog('leases expired')
  })

  it('drops NAT-PMP that reaches the WireGuard address from the public side', async () => {
    const dropped = async (): Promise<number> => {
      const { stdout } = await lab.exec('srv', 'nft', ['-j', 'list', 'chain', 'inet', 'wgpmp', 'input'])
      return Number(/"counter": \{"packets": (\d+)/.exec(stdout)?.[1] ?? NaN)
    }
    const before = await dropped()
    // The internet host routes 10.8.0.1 via the server's public address: the socket would answer, the table must not let it.
    await lab.exec('inet', 'ip', ['route', 'replace', `${lab.ips.wgSrv}/32`, 'via', lab.ips.public])
    const r = await lab.exec('inet', 'natpmpc', ['-g', lab.ips.wgSrv], { reject: false, timeout: 5_000 })
    expect(r.stdout).not.toContain('Public IP address')
    expect(await dropped()).toBeGreaterThan(before)
  })

  it('SIGTERM removes every forward and the table', async () => {
    expect(await nftList()).toContain('elements')
    expect(await wgpmp.stop('SIGTERM')).toBe(0)
    const tables = await lab.exec('srv', 'nft', ['list', 'tables'])
    expect(tables.stdout).not.toContain('wgpmp')
    expect(await talk(lab, 'inet', 'udp', lab.ips.public, 20011)).toBe('')
  })
})
