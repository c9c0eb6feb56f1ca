/** IptablesDriver against real iptables (iptables-nft on Debian 12) inside throwaway network namespaces. */
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import type { ForwardChange } from '../../src/core/forward.js'
import { IptablesDriver } from '../../src/drivers/iptables.js'
import type { Exec } from '../../src/core/exec.js'
import { isWgpmpError } from '../../src/core/errors.js'
import { NATPMP_PORT } from '../../src/protocol/constants.js'
import { CONFORMANCE_BASE, driverConformance, fwd } from '../drivers/conformance.js'
import { createNetns, removeAllNetns, type Netns } from './netns.js'

const add = (f: ReturnType<typeof fwd>): ForwardChange => ({ op: 'add', forward: f })

async function save(ns: Netns, table: 'nat' | 'filter'): Promise<string[]> {
  const r = await ns.exec('iptables-save', ['-t', table])
  expect(r.exitCode).toBe(0)
  return r.stdout.split('\n').filter((l) => l.startsWith('-A ') || l.startsWith(':'))
}

describe.runIf(process.getuid?.() === 0)('iptables driver (netns)', () => {
  afterAll(removeAllNetns)

  driverConformance('iptables', async () => {
    const ns = await createNetns()
    return { driver: new IptablesDriver({ exec: ns.exec }), cleanup: ns.remove }
  })

  describe('iptables specifics', () => {
    let ns: Netns | undefined
    afterEach(async () => {
      await ns?.remove()
      ns = undefined
    })

    it('iptables -t nat -S shows exactly one DNAT rule per forward', async () => {
      ns = await createNetns()
      const d = new IptablesDriver({ exec: ns.exec })
      await d.ensureBase({ publicV4: ['203.0.113.7', '198.51.100.9'], wgInterfaces: ['wg0'] })
      await d.apply([add(fwd('tcp', 40000, '10.8.0.2', 80)), add(fwd('udp', 40000, '10.8.0.3', 51820))])
      const r = await ns.exec('iptables', ['-t', 'nat', '-S'])
      expect(r.exitCode).toBe(0)
      const dnat = r.stdout.split('\n').filter((l) => l.includes('-j DNAT'))
      expect(dnat).toEqual([
        '-A WGPMP-DNAT -p tcp -m tcp --dport 40000 -j DNAT --to-destination 10.8.0.2:80',
        '-A WGPMP-DNAT -p udp -m udp --dport 40000 -j DNAT --to-destination 10.8.0.3:51820',
      ])
      const filter = await save(ns, 'filter')
      expect(filter.filter((l) => l.startsWith('-A WGPMP-ACCEPT'))).toHaveLength(2)
    })

    it('installs exactly one hook per base chain, even after repeated ensureBase and a stale jump', async () => {
      ns = await createNetns()
      // A crash of an older version could leave an extra jump behind.
      const pre = await ns.exec('iptables', ['-t', 'nat', '-N', 'WGPMP-PREROUTING'])
      expect(pre.exitCode).toBe(0)
      expect((await ns.exec('iptables', ['-t', 'nat', '-A', 'PREROUTING', '-j', 'WGPMP-PREROUTING'])).exitCode).toBe(0)
      expect((await ns.exec('iptables', ['-t', 'nat', '-N', 'WGPMP-OLD'])).exitCode).toBe(0)
      expect((await ns.exec('iptables', ['-t', 'nat', '-A', 'OUTPUT', '-j', 'WGPMP-OLD'])).exitCode).toBe(0)
      const d = new IptablesDriver({ exec: ns.exec })
      await d.ensureBase(CONFORMANCE_BASE)
      await d.ensureBase(CONFORMANCE_BASE)
      await d.ensureBase({ publicV4: ['203.0.113.7'], wgInterfaces: ['wg0', 'wg1'] })
      expect(await save(ns, 'nat')).toEqual([
        ':PREROUTING ACCEPT [0:0]',
        ':INPUT ACCEPT [0:0]',
        ':OUTPUT ACCEPT [0:0]',
        ':POSTROUTING ACCEPT [0:0]',
        ':WGPMP-DNAT - [0:0]',
        ':WGPMP-PREROUTING - [0:0]',
        '-A PREROUTING -j WGPMP-PREROUTING',
        '-A OUTPUT -j WGPMP-PREROUTING',
        '-A WGPMP-PREROUTING -d 203.0.113.7/32 -j WGPMP-DNAT',
      ])
      expect(await save(ns, 'filter')).toEqual([
        ':INPUT ACCEPT [0:0]',
        ':FORWARD ACCEPT [0:0]',
        ':OUTPUT ACCEPT [0:0]',
        ':WGPMP-ACCEPT - [0:0]',
        ':WGPMP-FORWARD - [0:0]',
        ':WGPMP-INPUT - [0:0]',
        '-A INPUT -j WGPMP-INPUT',
        '-A FORWARD -j WGPMP-FORWARD',
        '-A WGPMP-FORWARD -m conntrack --ctstate DNAT --ctorigdst 203.0.113.7 -j WGPMP-ACCEPT',
        `-A WGPMP-INPUT -i wg0 -p udp -m udp --dport ${NATPMP_PORT} -j RETURN`,
        `-A WGPMP-INPUT -i wg1 -p udp -m udp --dport ${NATPMP_PORT} -j RETURN`,
        `-A WGPMP-INPUT -p udp -m udp --dport ${NATPMP_PORT} -j DROP`,
      ])
    })

    it('teardown leaves no trace and keeps foreign rules', async () => {
      ns = await createNetns()
      expect((await ns.exec('iptables', ['-A', 'FORWARD', '-s', '192.0.2.1/32', '-j', 'DROP'])).exitCode).toBe(0)
      const d = new IptablesDriver({ exec: ns.exec })
      await d.ensureBase(CONFORMANCE_BASE)
      await d.apply([add(fwd('udp', 40000))])
      await d.teardown()
      const all = [...(await save(ns, 'nat')), ...(await save(ns, 'filter'))]
      expect(all.filter((l) => l.includes('WGPMP'))).toEqual([])
      expect(all).toContain('-A FORWARD -s 192.0.2.1/32 -j DROP')
    })

    it('rolls nat back when the filter batch fails, and reports the stderr', async () => {
      ns = await createNetns()
      const inner = ns.exec
      let failFilter = false
      const exec: Exec = async (file, args, o) => {
        if (failFilter && file === 'iptables-restore' && o?.input?.startsWith('*filter')) {
          // A real failure from iptables: the batch's adds go to a chain that does not exist.
          return inner(file, args, { input: o.input.replaceAll('-A WGPMP-ACCEPT', '-A WGPMP-MISSING') })
        }
        return inner(file, args, o)
      }
      const d = new IptablesDriver({ exec })
      await d.ensureBase(CONFORMANCE_BASE)
      const keep = fwd('tcp', 40000)
      await d.apply([add(keep)])
      const before = await save(ns, 'nat')
      failFilter = true
      const e: unknown = await d.apply([add(fwd('udp', 40001)), { op: 'delete', forward: keep }]).catch((x: unknown) => x)
      expect(e).toMatchObject({ code: 'WGPMP_KERNEL_REFUSED' })
      expect((e as Error).message).toContain('(-A WGPMP-ACCEPT -p udp') // the driver's own line 3
      expect((e as Error).cause).toMatchObject({ exitCode: 1, stderr: expect.stringContaining('No chain/target/match') as unknown })
      expect(await save(ns, 'nat')).toEqual(before)
      failFilter = false
      expect(await d.list()).toEqual([keep])
    })

    it('rejects a foreign rule in its DNAT chain instead of ignoring it', async () => {
      ns = await createNetns()
      const d = new IptablesDriver({ exec: ns.exec })
      await d.ensureBase(CONFORMANCE_BASE)
      const r = await ns.exec('iptables', [
        '-t',
        'nat',
        '-A',
        'WGPMP-DNAT',
        '-s',
        '192.0.2.1',
        '-p',
        'tcp',
        '--dport',
        '1',
        '-j',
        'DNAT',
        '--to-destination',
        '10.0.0.1:2',
      ])
      expect(r.exitCode).toBe(0)
      const e: unknown = await d.list().catch((x: unknown) => x)
      expect(isWgpmpError(e, 'WGPMP_KERNEL_UNEXPECTED')).toBe(true)
      await d.ensureBase(CONFORMANCE_BASE) // and ensureBase cleans it up
      expect(await d.list()).toEqual([])
    })
  })
})
