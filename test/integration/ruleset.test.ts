/** nft/wgpmp.nft without the daemon: forwards as map elements, proven with real traffic in the namespace lab. */
import { readFile, writeFile } from 'node:fs/promises'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { isRoot, startLab, waitFor, type Lab, type LabNs } from './lab.js'
import { listen as listenIn, talk as talkIn, type Proto } from './traffic.js'
interface Fwd {
  readonly proto: Proto
  readonly ext: number
  readonly addr: string
  readonly port: number
}

const RULESET = new URL('../../nft/wgpmp.nft', import.meta.url)

/** One `nft -j` batch: one element per forward, as the daemon's driver does it. */
function batch(op: 'add' | 'delete', fwds: readonly Fwd[]): string {
  const cmds = fwds.flatMap((f) => {
    const key = { concat: [f.proto, f.ext] }
    return [{ [op]: { element: { family: 'inet', table: 'wgpmp', name: 'forwards_v4', elem: [op === 'add' ? [key, { concat: [f.addr, f.port] }] : key] } } }]
  })
  return JSON.stringify({ nftables: cmds })
}

interface NftCounter {
  counter?: { packets: number; bytes: number }
}

describe.runIf(isRoot)('nft/wgpmp.nft in the lab (no daemon)', () => {
  let lab: Lab
  let c1Tcp: Fwd
  let c2Tcp: Fwd
  let c1Udp: Fwd

  const nft = (args: readonly string[], input?: string) => (input === undefined ? lab.exec('srv', 'nft', args) : lab.exec('srv', 'nft', args, { input }))

  /**
   * Applies an `nft -j` batch. Not `nft -j -f -` with execa's `input`: nft 1.0.6 opens
   * /dev/stdin by path for JSON, which fails (ENXIO) on the socketpair Node gives a child as
   * stdin. A file in the lab dir is what src/drivers/nft.ts does too.
   */
  let batches = 0
  async function nftJson(json: string): Promise<void> {
    const file = `${lab.dir}/batch-${++batches}.json`
    await writeFile(file, json)
    await nft(['-j', '-f', file])
  }

  const talk = (from: LabNs, proto: Proto, dst: string, port: number, opts: { sourcePort?: number } = {}): Promise<string> =>
    talkIn(lab, from, proto, dst, port, opts)
  const listen = (ns: LabNs, proto: Proto, bind: string, port: number, name: string): Promise<void> => listenIn(lab, ns, proto, bind, port, name)

  async function dropCounter(): Promise<number> {
    const { stdout } = await nft(['-j', 'list', 'chain', 'inet', 'wgpmp', 'input'])
    const items = (JSON.parse(stdout) as { nftables: { rule?: { expr: NftCounter[] } }[] }).nftables
    const counters = items.flatMap((i) => i.rule?.expr ?? []).flatMap((e) => (e.counter ? [e.counter.packets] : []))
    expect(counters).toHaveLength(1)
    return counters[0] ?? NaN
  }

  beforeAll(async () => {
    lab = await startLab()
    c1Tcp = { proto: 'tcp', ext: 8080, addr: lab.ips.c1, port: 8080 }
    c2Tcp = { proto: 'tcp', ext: 8443, addr: lab.ips.c2, port: 443 }
    c1Udp = { proto: 'udp', ext: 8080, addr: lab.ips.c1, port: 9001 }

    // Exactly how the daemon loads it: one atomic transaction replacing any stale table.
    const base = await readFile(RULESET, 'utf8')
    const script = [
      'table inet wgpmp {}',
      'delete table inet wgpmp',
      base,
      `add element inet wgpmp public_v4 { ${lab.ips.public} }`,
      `add element inet wgpmp wg_ifnames { "${lab.ifaces.srvWg}" }`,
      '',
    ].join('\n')
    await nft(['-f', '-'], script)

    await listen('c1', 'tcp', lab.ips.c1, 8080, 'c1-tcp')
    await listen('c1', 'udp', lab.ips.c1, 9001, 'c1-udp')
    await listen('c2', 'tcp', lab.ips.c2, 443, 'c2-tcp')
    await listen('inet', 'tcp', lab.ips.inet, 8080, 'inet-tcp')
    await listen('srv', 'udp', '0.0.0.0', 5351, 'srv-pmp')
  })

  afterAll(async () => {
    await lab?.down()
  })

  afterEach(async () => {
    // Each test starts with empty maps and no remembered flows.
    await nft(['flush', 'map', 'inet', 'wgpmp', 'forwards_v4'])
    await lab.exec('srv', 'conntrack', ['-F'], { reject: false })
  })

  it('loads with the public address and WireGuard interface filled in', async () => {
    const { stdout } = await nft(['list', 'table', 'inet', 'wgpmp'])
    expect(stdout).toContain(lab.ips.public)
    expect(stdout).toContain(`"${lab.ifaces.srvWg}"`)
  })

  it('(a) forwards TCP from the internet to the client, keeping the source address', async () => {
    await nftJson(batch('add', [c1Tcp, c2Tcp]))
    expect(await talk('inet', 'tcp', lab.ips.public, 8080)).toBe(`c1-tcp ${lab.ips.inet}`)
    // Keyed by external port: 8443 goes to another client and another internal port.
    expect(await talk('inet', 'tcp', lab.ips.public, 8443)).toBe(`c2-tcp ${lab.ips.inet}`)
  })

  it('(b) forwards UDP, and the reply comes back from the public address', async () => {
    await nftJson(batch('add', [c1Udp]))
    // socat's UDP client only accepts replies from the address:port it sent to.
    expect(await talk('inet', 'udp', lab.ips.public, 8080)).toBe(`c1-udp ${lab.ips.inet}`)
  })

  it('(c) stops forwarding new connections once the elements are deleted', async () => {
    await nftJson(batch('add', [c1Tcp, c1Udp]))
    expect(await talk('inet', 'tcp', lab.ips.public, 8080)).toBe(`c1-tcp ${lab.ips.inet}`)
    expect(await talk('inet', 'udp', lab.ips.public, 8080, { sourcePort: 40001 })).toBe(`c1-udp ${lab.ips.inet}`)
    await nftJson(batch('delete', [c1Tcp, c1Udp]))
    expect((await nft(['list', 'map', 'inet', 'wgpmp', 'forwards_v4'])).stdout).not.toContain('elements')
    expect(await talk('inet', 'tcp', lab.ips.public, 8080)).toBe('')
    expect(await talk('inet', 'udp', lab.ips.public, 8080, { sourcePort: 40002 })).toBe('')
  })

  it('(c) but a flow conntrack already knows keeps its DNAT until its entry is deleted', async () => {
    // Documents kernel behaviour the daemon must handle on delete/expiry (conntrack -D).
    await nftJson(batch('add', [c1Udp]))
    expect(await talk('inet', 'udp', lab.ips.public, 8080, { sourcePort: 40003 })).toBe(`c1-udp ${lab.ips.inet}`)
    await nftJson(batch('delete', [c1Udp]))
    expect(await talk('inet', 'udp', lab.ips.public, 8080, { sourcePort: 40003 })).toBe(`c1-udp ${lab.ips.inet}`)
    await lab.exec('srv', 'conntrack', ['-D', '-p', 'udp', '--orig-dst', lab.ips.public, '--orig-port-dst', '8080'])
    expect(await talk('inet', 'udp', lab.ips.public, 8080, { sourcePort: 40003 })).toBe('')
  })

  it('(d) does not hijack a client connecting out to the same port elsewhere', async () => {
    await nftJson(batch('add', [c1Tcp]))
    // Through the tunnel, masqueraded by the lab's table ip labnat.
    expect(await talk('c1', 'tcp', lab.ips.inet, 8080)).toBe(`inet-tcp ${lab.ips.public}`)
  })

  it('hairpin: the server, another client and the client itself reach a forward by the public address', async () => {
    await nftJson(batch('add', [c1Tcp]))
    expect(await talk('srv', 'tcp', lab.ips.public, 8080)).toBe(`c1-tcp ${lab.ips.public}`) // output chain
    // wg to wg: masqueraded to the server's tunnel address by the postrouting chain.
    expect(await talk('c2', 'tcp', lab.ips.public, 8080)).toBe(`c1-tcp ${lab.ips.wgSrv}`)
    // Without the masquerade this one fails: c1 would get the reply from itself.
    expect(await talk('c1', 'tcp', lab.ips.public, 8080)).toBe(`c1-tcp ${lab.ips.wgSrv}`)
    // Internet traffic keeps its real source.
    expect(await talk('inet', 'tcp', lab.ips.public, 8080)).toBe(`c1-tcp ${lab.ips.inet}`)
  })

  it('the forward hook accepts exactly the forwards in the map (checked with the chain set to drop)', async () => {
    await nftJson(batch('add', [c1Tcp]))
    // Another table DNATs port 9999 of the public address to the same client: not a wgpmp forward.
    await nft(
      ['-f', '-'],
      'table ip scratchdnat {\n chain pre {\n  type nat hook prerouting priority dstnat - 5; policy accept;\n  ip daddr ' +
        lab.ips.public +
        ' tcp dport 9999 dnat to ' +
        lab.ips.c1 +
        ':8080\n }\n}\n',
    )
    await nft(['chain', 'inet', 'wgpmp', 'forward', '{ policy drop; }'])
    try {
      expect(await talk('inet', 'tcp', lab.ips.public, 8080)).toBe(`c1-tcp ${lab.ips.inet}`)
      expect(await talk('inet', 'tcp', lab.ips.public, 9999)).toBe('')
    } finally {
      await nft(['chain', 'inet', 'wgpmp', 'forward', '{ policy accept; }'])
      await nft(['delete', 'table', 'ip', 'scratchdnat'])
    }
  })

  it('(e) drops NAT-PMP from outside the tunnel and counts it, but not from a client', async () => {
    const before = await dropCounter()
    expect(await talk('inet', 'udp', lab.ips.public, 5351)).toBe('')
    await waitFor(async () => (await dropCounter()) > before, { timeoutMs: 3_000, what: 'drop counter to increase' })
    const afterInet = await dropCounter()
    expect(await talk('c1', 'udp', lab.ips.wgSrv, 5351)).toBe(`srv-pmp ${lab.ips.c1}`)
    expect(await dropCounter()).toBe(afterInet)
  })
})
