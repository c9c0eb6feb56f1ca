/** The lab's IPv6 half without the daemon: routed global prefix, NAT66 for the ULA, and a hand-made IPv6 DNAT. */
import { randomInt } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isRoot, startLab, waitFor, type Lab, type LabNs } from './lab.js'

/** socat: give up connecting / waiting for a reply after this many seconds. */
const SOCAT_WAIT_S = '2'
const PORT = 8080
const DNAT_PORT = 18080

/** An IPv6 address in its canonical (RFC 5952) form; socat's SOCAT_PEERADDR is `[2001:0db8:…:0001]`. */
function canon6(addr: string): string {
  const bare = addr.replace(/^\[|\]$/g, '')
  return new URL(`http://[${bare}]/`).hostname.slice(1, -1)
}

/** "NAME [PEER]" as a listener answers, with the peer canonical; other text unchanged. */
function canonReply(reply: string): string {
  const m = /^(\S+) (\[[0-9a-fA-F:.]+\])$/.exec(reply)
  return m?.[1] !== undefined && m[2] !== undefined ? `${m[1]} ${canon6(m[2])}` : reply
}

/** Sends one line over TCP/IPv6 from `from` to [dst]:port; resolves with the reply, canonicalized ('' on failure; never throws). */
async function talk6(lab: Lab, from: LabNs, dst: string, port: number): Promise<string> {
  const r = await lab.exec(from, 'socat', ['-T', SOCAT_WAIT_S, '-t', SOCAT_WAIT_S, '-', `TCP6:[${dst}]:${port},connect-timeout=${SOCAT_WAIT_S}`], {
    input: 'hello\n',
    reject: false,
    timeout: 10_000,
  })
  return canonReply(r.stdout.trim())
}

/** A TCP/IPv6 listener on [bind]:port (killed by lab.down()) answering each connection with "NAME [PEER]". */
async function listen6(lab: Lab, ns: LabNs, bind: string, port: number, name: string): Promise<void> {
  void lab.spawn(ns, 'socat', [`TCP6-LISTEN:${port},bind=[${bind}],reuseaddr,fork`, `SYSTEM:echo ${name} $SOCAT_PEERADDR`])
  await waitFor(async () => (await lab.exec(ns, 'ss', ['-Hltn6', `sport = :${port}`])).stdout.includes(`:${port}`), {
    timeoutMs: 5_000,
    what: `${name} listening on tcp6/${port}`,
  })
}

describe.runIf(isRoot)('lab: IPv6 (routed global prefix, NAT66 for the ULA), no daemon', () => {
  let lab: Lab

  beforeAll(async () => {
    lab = await startLab(
      `v6${randomInt(36 ** 4)
        .toString(36)
        .padStart(4, '0')}`,
    )
    await listen6(lab, 'c1', lab.ips.c1v6, PORT, 'c1-tcp6')
    await listen6(lab, 'c2', lab.ips.c2v6, PORT, 'c2-tcp6')
    await listen6(lab, 'inet', lab.ips.inet6, PORT, 'inet-tcp6')
  })

  afterAll(async () => {
    await lab?.down()
  })

  it('publishes the IPv6 addresses and prefixes', () => {
    expect(lab.ips).toMatchObject({
      public6: '2001:db8:100::1',
      inet6: '2001:db8:100::254',
      wgSrv6: 'fd42:42::1',
      wgSrvGlobal6: '2001:db8:200::1',
      c1v6: 'fd42:42::2',
      c2v6: '2001:db8:200::3',
    })
    expect(lab.env).toMatchObject({ WG_PREFIX6: 'fd42:42::/64', GLOBAL_PREFIX6: '2001:db8:200::/64' })
  })

  it('the internet reaches the global client through the server, without NAT', async () => {
    expect(await talk6(lab, 'inet', lab.ips.c2v6, PORT)).toBe(`c2-tcp6 ${lab.ips.inet6}`)
  })

  it('NAT66: the ULA client goes out from the public address; the global client keeps its own', async () => {
    expect(await talk6(lab, 'c1', lab.ips.inet6, PORT)).toBe(`inet-tcp6 ${lab.ips.public6}`)
    expect(await talk6(lab, 'c2', lab.ips.inet6, PORT)).toBe(`inet-tcp6 ${lab.ips.c2v6}`)
  })

  it('the internet has no route to the ULA client', async () => {
    expect(await talk6(lab, 'inet', lab.ips.c1v6, PORT)).toBe('')
  })

  it('c1 and c2 talk IPv6 through the server, unmasqueraded', async () => {
    expect(await talk6(lab, 'c1', lab.ips.c2v6, PORT)).toBe(`c2-tcp6 ${lab.ips.c1v6}`)
    expect(await talk6(lab, 'c2', lab.ips.c1v6, PORT)).toBe(`c1-tcp6 ${lab.ips.c2v6}`)
  })

  it('a hand-loaded IPv6 DNAT (table ip6 scratch6) forwards the public address to the ULA client', async () => {
    const nft = (args: readonly string[], input?: string) => (input === undefined ? lab.exec('srv', 'nft', args) : lab.exec('srv', 'nft', args, { input }))
    expect(await talk6(lab, 'inet', lab.ips.public6, DNAT_PORT)).toBe('')
    await nft(
      ['-f', '-'],
      [
        'table ip6 scratch6 {',
        '\tchain prerouting {',
        '\t\ttype nat hook prerouting priority dstnat; policy accept;',
        `\t\tip6 daddr ${lab.ips.public6} tcp dport ${DNAT_PORT} dnat to [${lab.ips.c1v6}]:${PORT}`,
        '\t}',
        '}',
        '',
      ].join('\n'),
    )
    try {
      // The reply leaves through eth0 un-DNATed by conntrack, not masqueraded by labnat6.
      expect(await talk6(lab, 'inet', lab.ips.public6, DNAT_PORT)).toBe(`c1-tcp6 ${lab.ips.inet6}`)
    } finally {
      await nft(['delete', 'table', 'ip6', 'scratch6'])
    }
    expect((await nft(['list', 'tables'])).stdout).not.toContain('scratch6')
    expect(await talk6(lab, 'inet', lab.ips.public6, DNAT_PORT)).toBe('')
  })
})
