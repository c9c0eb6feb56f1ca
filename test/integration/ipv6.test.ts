/**
 * IPv6 end to end: PCP over the WireGuard IPv6 address. A client with a unique-local address
 * (c1, fd42:42::2, NAT66 like wg-easy v15) gets a DNAT from the server's public IPv6 address; a
 * client with a global address (c2, 2001:db8:200::3) gets a pinhole in a prefix wgpmp guards.
 */
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isRoot, startLab, waitFor, type Lab, type LabNs } from './lab.js'
import { labConfig, natpmpc, startWgpmp, type Wgpmp } from './wgpmp-proc.js'

const PYTHON = '/usr/bin/python3'
const PCP_PROBE = fileURLToPath(new URL('./pcp_probe.py', import.meta.url))

interface PcpReply {
  result?: number
  external?: number
  address?: string
  lifetime?: number
  len?: number
}

describe.runIf(isRoot)('IPv6: PCP over the tunnel, NAT66 forwards and pinholes (nft driver)', () => {
  let lab: Lab
  let wgpmp: Wgpmp
  const nft = async (...args: string[]): Promise<string> => (await lab.exec('srv', 'nft', args, { reject: false })).stdout

  /** One PCP exchange from a client namespace over IPv6 (pcp_probe.py). */
  async function pcp(ns: 'c1' | 'c2', client: string, req: Record<string, unknown>): Promise<PcpReply> {
    const r = await lab.exec(ns, PYTHON, [PCP_PROBE, lab.ips.wgSrv6, client, JSON.stringify([{ op: 'map', ...req }])], { timeout: 20_000 })
    return JSON.parse(r.stdout.trim()) as PcpReply
  }
  /** A TCP connection over IPv6; returns the listener's greeting or '' (never throws). */
  async function talk6(from: LabNs, dst: string, port: number): Promise<string> {
    const r = await lab.exec(from, 'socat', ['-T', '2', '-t', '2', '-', `TCP6:[${dst}]:${port},connect-timeout=2`], {
      input: 'hi\n',
      reject: false,
      timeout: 10_000,
    })
    return r.stdout.trim().split(' ')[0] ?? ''
  }
  async function listen6(ns: LabNs, bind: string, port: number, name: string): Promise<void> {
    void lab.spawn(ns, 'socat', [`TCP6-LISTEN:${port},bind=[${bind}],reuseaddr,fork`, `SYSTEM:echo ${name}`])
    await waitFor(async () => (await lab.exec(ns, 'ss', ['-Hltn', `sport = :${port}`])).stdout.includes(`:${port}`), {
      timeoutMs: 5_000,
      what: `${name} listening`,
    })
  }

  beforeAll(async () => {
    lab = await startLab()
    wgpmp = await startWgpmp(lab, labConfig(lab, { wg_address_v6: `${lab.ips.wgSrv6}/64`, ipv6_guarded_prefixes: [lab.env.GLOBAL_PREFIX6!] }))
    await listen6('c1', lab.ips.c1v6, 8080, 'c1-web6')
    await listen6('c2', lab.ips.c2v6, 9090, 'c2-web6')
  })
  afterAll(async () => {
    await wgpmp?.stop()
    await lab?.down()
  })

  it('listens for PCP on the WireGuard IPv6 address and finds the public IPv6 address itself', async () => {
    const l = await wgpmp.waitLog('PCP listening on IPv6')
    expect(l.address).toBe(lab.ips.wgSrv6)
    expect((await wgpmp.waitLog('forwarding base installed')).publicAddressV6).toBe(lab.ips.public6)
  })

  it('a unique-local client maps over PCP: [public IPv6]:port reaches it from the internet (NAT66)', async () => {
    expect(await talk6('inet', lab.ips.public6, 28080)).toBe('')
    const r = await pcp('c1', lab.ips.c1v6, { protocol: 6, internal: 8080, external: 28080, lifetime: 600 })
    expect(r).toMatchObject({ result: 0, external: 28080, address: lab.ips.public6, lifetime: 600, len: 60 })
    expect(await nft('list', 'map', 'inet', 'wgpmp', 'forwards_v6')).toContain(`tcp . 28080 : ${lab.ips.c1v6} . 8080`)
    expect(await talk6('inet', lab.ips.public6, 28080)).toBe('c1-web6')
  })

  it('a global client is firewalled by wgpmp until it opens a pinhole over PCP, and again after deleting it', async () => {
    expect(await talk6('inet', lab.ips.c2v6, 9090)).toBe('') // guarded prefix: new inbound connections dropped
    const nonce = '0102030405060708090a0b0c'
    const r = await pcp('c2', lab.ips.c2v6, { protocol: 6, internal: 9090, external: 1, lifetime: 600, nonce })
    // A pinhole is the client's own address and port (PCP reports them).
    expect(r).toMatchObject({ result: 0, external: 9090, address: lab.ips.c2v6 })
    expect(await nft('list', 'set', 'inet', 'wgpmp', 'pinholes_v6')).toContain(`${lab.ips.c2v6} . tcp . 9090`)
    expect(await talk6('inet', lab.ips.c2v6, 9090)).toBe('c2-web6')
    // Only the mapping's own nonce may delete it (RFC 6887 §11.3).
    expect((await pcp('c2', lab.ips.c2v6, { protocol: 6, internal: 9090, lifetime: 0 })).result).toBe(2)
    expect((await pcp('c2', lab.ips.c2v6, { protocol: 6, internal: 9090, lifetime: 0, nonce })).result).toBe(0)
    expect(await nft('list', 'set', 'inet', 'wgpmp', 'pinholes_v6')).not.toContain('9090')
    expect(await talk6('inet', lab.ips.c2v6, 9090)).toBe('')
    // The client's own outgoing IPv6 is not affected by the guard.
    expect(await talk6('c2', lab.ips.inet6, 1)).toBe('') // nothing listens there: refused, not hanging
  })

  it('NAT-PMP over IPv4 still works alongside, and the other client reaches the IPv6 forward by hairpin', async () => {
    const r = await natpmpc(lab, 'c1', ['-a', '0', '8080', 'tcp', '600'])
    expect(r.port).not.toBeNull()
    expect(await talk6('c2', lab.ips.public6, 28080)).toBe('c1-web6')
  })

  it('SIGTERM removes the IPv6 forwards with the table', async () => {
    expect(await wgpmp.stop('SIGTERM')).toBe(0)
    expect(await nft('list', 'tables')).not.toContain('wgpmp')
    expect(await talk6('inet', lab.ips.public6, 28080)).toBe('')
  })
})
