import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import type { Exec, ExecResult } from '../../../src/core/exec.js'
import {
  ACCEPT_COMMENT,
  HostFirewall,
  findForwardBlocks,
  isIptablesNftTable,
  parseIptablesS,
  parseNftRuleset,
  type FwTable,
} from '../../../src/host/firewall.js'
import { silentLogger } from '../../../src/log.js'
import { FakeClock } from '../../../src/core/clock.js'

const fx = (name: string): string => readFileSync(new URL(`../../fixtures/firewall/${name}`, import.meta.url), 'utf8')
const IFS = { wgInterface: 'wg0', publicInterface: 'eth0' }

/** What the daemon reads for a captured state: nft's tables, the iptables-nft ones through iptables -S. */
const tablesOf = (name: string): FwTable[] =>
  parseNftRuleset(fx(`${name}.json`)).map((t) => (isIptablesNftTable(t) ? parseIptablesS(fx(`${name}.iptables-S.txt`), 'ip', 'iptables') : t))

describe('parseNftRuleset (nft -j list ruleset, nft 1.0.6 captures)', () => {
  it('reads base chains with hook and policy, rules in order with handles and comments; skips inet wgpmp', () => {
    const [t] = parseNftRuleset(fx('nft-drop-fixed.json'))
    const fwd = t!.chains.get('forward')!
    expect(fwd).toMatchObject({ hook: 'forward', policy: 'drop' })
    expect(fwd.rules.map((r) => r.handle)).toEqual([5, 2, 3, 4])
    expect(fwd.rules[0]).toMatchObject({ comment: ACCEPT_COMMENT, verdict: { kind: 'accept' }, matches: [{ key: 'ctstatus', values: ['DNAT'] }] })
    const ours = JSON.stringify({
      nftables: [{ table: { family: 'inet', name: 'wgpmp' } }, { chain: { family: 'inet', table: 'wgpmp', name: 'forward', hook: 'forward', policy: 'drop' } }],
    })
    expect(parseNftRuleset(ours)).toEqual([])
  })

  it('iptables-nft matches are opaque xt expressions in JSON: the ufw table is recognised as iptables-nft', () => {
    const [t] = parseNftRuleset(fx('ufw-drop.json'))
    expect(isIptablesNftTable(t!)).toBe(true)
    const before = t!.chains.get('ufw-before-forward')!
    expect(before.rules[0]!.matches).toEqual([{ key: 'opaque', what: 'xt match conntrack' }])
    // From JSON alone the verdict is unknown (an unreadable accept precedes the policy): no warning.
    expect(findForwardBlocks([t!], IFS)).toEqual([])
  })

  it('never throws on garbage', () => {
    for (const s of ['', 'null', '{"nftables": 3}', '{"nftables": [{"rule": {"family": 1}}, null, {"chain": {}}]}']) expect(parseNftRuleset(s)).toEqual([])
  })
})

describe('findForwardBlocks', () => {
  it('ufw with DEFAULT_FORWARD_POLICY=DROP drops the first packet of a forward by policy; the fix is the iptables accept', () => {
    expect(findForwardBlocks(tablesOf('ufw-drop'), IFS)).toEqual([
      {
        backend: 'iptables',
        family: 'ip',
        table: 'filter',
        chain: 'FORWARD',
        packet: 'inbound',
        by: 'policy drop',
        fix: 'iptables -I FORWARD -m conntrack --ctstate DNAT -j ACCEPT',
      },
    ])
  })

  it('a ufw port allowance (tcp 8080) does not count as accepting forwards in general', () => {
    const t = parseIptablesS(fx('ufw-drop.iptables-S.txt'), 'ip', 'iptables')
    expect(t.chains.get('ufw-user-forward')!.rules[0]!.matches.map((m) => m.key)).toEqual(['l4proto', 'specific'])
    expect(findForwardBlocks([t], IFS)).toHaveLength(1)
  })

  it('ufw with the suggested rule inserted: nothing blocks', () => {
    expect(findForwardBlocks(tablesOf('ufw-drop-fixed'), IFS)).toEqual([])
  })

  it("Docker's FORWARD policy DROP blocks a host-side forward to wg0", () => {
    expect(findForwardBlocks(tablesOf('docker-drop'), IFS)).toMatchObject([{ chain: 'FORWARD', packet: 'inbound', by: 'policy drop' }])
  })

  it("wg-easy's default PostUp (-o wg0 / -i wg0 ACCEPT) after Docker's rules accepts both directions", () => {
    expect(findForwardBlocks(tablesOf('docker-wg-easy'), IFS)).toEqual([])
    // The same rules for another interface do not.
    expect(findForwardBlocks(tablesOf('docker-wg-easy'), { wgInterface: 'wg1', publicInterface: 'eth0' })).toHaveLength(1)
  })

  it('native nftables: policy drop with only wg0 -> eth0 accepted drops the inbound packet; the fix names the chain', () => {
    expect(findForwardBlocks(parseNftRuleset(fx('nft-drop.json')), IFS)).toEqual([
      {
        backend: 'nft',
        family: 'inet',
        table: 'filter',
        chain: 'forward',
        packet: 'inbound',
        by: 'policy drop',
        fix: 'nft insert rule inet filter forward ct status dnat accept',
      },
    ])
    expect(findForwardBlocks(parseNftRuleset(fx('nft-drop-fixed.json')), IFS)).toEqual([])
  })

  it('a drop rule (not the policy) that our traffic reaches is named; the reply direction is checked too', () => {
    const t = parseIptablesS(
      '-P FORWARD ACCEPT\n-A FORWARD -i eth0 -o wg0 -m conntrack --ctstate NEW -j ACCEPT\n-A FORWARD -i wg0 -j REJECT --reject-with icmp-port-unreachable\n',
      'ip',
      'iptables',
    )
    expect(findForwardBlocks([t], IFS)).toMatchObject([{ packet: 'reply', by: '-A FORWARD -i wg0 -j REJECT --reject-with icmp-port-unreachable' }])
  })

  it('negation, wildcards, goto and return are followed', () => {
    const t = parseIptablesS(
      [
        '-P FORWARD DROP',
        '-N a',
        '-N b',
        '-A FORWARD ! -i eth0 -j ACCEPT',
        '-A FORWARD -o wg+ -g a',
        '-A a -j b',
        '-A b -p udp -j RETURN',
        '-A b -j ACCEPT',
      ].join('\n'),
      'ip',
      'iptables',
    )
    // tcp: a -> b -> ACCEPT; udp: b returns, a ends, goto returns past FORWARD's rest: policy drop.
    expect(findForwardBlocks([t], IFS)).toMatchObject([{ packet: 'inbound', by: 'policy drop' }])
    // With the reply direction accepted and the goto accepting everything: nothing blocks.
    const tcpOnly = parseIptablesS(
      ['-P FORWARD DROP', '-N a', '-A FORWARD -i wg0 -j ACCEPT', '-A FORWARD -o wg+ -g a', '-A a -j ACCEPT'].join('\n'),
      'ip',
      'iptables',
    )
    expect(findForwardBlocks([tcpOnly], IFS)).toEqual([])
  })

  it('an unreadable match before the drop makes the verdict unknown: no warning', () => {
    const t = parseIptablesS('-P FORWARD DROP\n-A FORWARD -m set --match-set allowed dst -j ACCEPT\n', 'ip', 'iptables')
    expect(findForwardBlocks([t], IFS)).toEqual([])
  })
})

describe('HostFirewall (scripted exec)', () => {
  /** An nft that has one inet filter forward chain with policy drop, and records the commands. */
  const fakeNft = (): { exec: Exec; calls: string[]; inserted: () => boolean } => {
    let inserted = false
    const calls: string[] = []
    const ok = (stdout: string): ExecResult => ({ stdout, stderr: '', exitCode: 0 })
    const exec: Exec = (file, args) => {
      calls.push(`${file} ${args.join(' ')}`)
      const a = args.join(' ')
      if (file === 'iptables-legacy') return Promise.resolve({ stdout: '', stderr: 'not found', exitCode: 127 })
      if (a === '-j list tables')
        return Promise.resolve(ok(JSON.stringify({ nftables: [{ table: { family: 'inet', name: 'filter' } }, { table: { family: 'inet', name: 'wgpmp' } }] })))
      if (a === '-j list table inet filter' || a === '-j list chain inet filter forward') {
        return Promise.resolve(ok(inserted ? fx('nft-drop-fixed.json') : fx('nft-drop.json')))
      }
      if (a.startsWith('-e -a insert rule inet filter forward ct status dnat accept comment')) {
        inserted = true
        return Promise.resolve(ok('insert rule inet filter forward ct status dnat accept comment "wgpmp-host-firewall-accept" # handle 5'))
      }
      if (a === 'delete rule inet filter forward handle 5') {
        inserted = false
        return Promise.resolve(ok(''))
      }
      return Promise.resolve({ stdout: '', stderr: `unexpected: ${a}`, exitCode: 1 })
    }
    return { exec, calls, inserted: () => inserted }
  }

  it('detects the drop without touching anything when host_firewall_accept is off; never lists our table', async () => {
    const n = fakeNft()
    const fw = new HostFirewall({ exec: n.exec, log: silentLogger(), clock: new FakeClock(0), ...IFS, accept: false })
    await fw.check()
    expect(fw.current.blocksForwards).toBe(true)
    expect(fw.current.blocks[0]!.fix).toBe('nft insert rule inet filter forward ct status dnat accept')
    expect(n.calls.some((c) => c.includes('wgpmp'))).toBe(false)
    expect(n.calls.some((c) => c.includes('insert'))).toBe(false)
  })

  it('with host_firewall_accept inserts the accept (then sees no block) and removes exactly that rule on close', async () => {
    const n = fakeNft()
    const fw = new HostFirewall({ exec: n.exec, log: silentLogger(), clock: new FakeClock(0), ...IFS, accept: true })
    await fw.check()
    expect(n.inserted()).toBe(true)
    expect(fw.current).toMatchObject({ blocksForwards: false, inserted: ['nft insert rule inet filter forward ct status dnat accept'] })
    await fw.check() // a later check inserts nothing more
    expect(n.calls.filter((c) => c.includes(' insert ')).length).toBe(1)
    await fw.close()
    expect(n.inserted()).toBe(false)
    expect(n.calls).toContain('nft delete rule inet filter forward handle 5')
  })

  it('a failing nft is an error in the status, not a throw', async () => {
    const exec: Exec = () => Promise.resolve({ stdout: '', stderr: 'Operation not permitted', exitCode: 1 })
    const fw = new HostFirewall({ exec, log: silentLogger(), clock: new FakeClock(0), ...IFS, accept: true })
    await fw.check()
    expect(fw.current).toMatchObject({ blocksForwards: false, error: 'nft list tables: Operation not permitted' })
  })
})
