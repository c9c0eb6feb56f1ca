/** NftDriver against real nft inside throwaway network namespaces: the shared conformance suite, both modes. */
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { NftDriver } from '../../src/drivers/nft.js'
import { CONFORMANCE_BASE, driverConformance, fwd } from '../drivers/conformance.js'
import { createNetns, removeAllNetns, type Netns } from './netns.js'

const makeIn = (mode: 'session' | 'spawn') => async () => {
  const ns = await createNetns()
  const driver = new NftDriver({ exec: ns.exec, mode, nftArgv: ['ip', 'netns', 'exec', ns.name, 'nft'] })
  return {
    driver,
    cleanup: async () => {
      driver.close()
      await ns.remove()
    },
  }
}

describe.runIf(process.getuid?.() === 0)('nft driver (netns)', () => {
  afterAll(removeAllNetns)

  driverConformance('nft (session)', makeIn('session'))
  driverConformance('nft (spawn)', makeIn('spawn'))

  describe('nft specifics', () => {
    let ns: Netns | undefined
    let d: NftDriver | undefined
    afterEach(async () => {
      d?.close() // the session's nft process must not outlive the namespace
      d = undefined
      await ns?.remove()
      ns = undefined
    })

    it('a forward is one element in each of forwards_v4 and accept_v4', async () => {
      ns = await createNetns()
      d = new NftDriver({ exec: ns.exec, nftArgv: ['ip', 'netns', 'exec', ns.name, 'nft'] })
      await d.ensureBase(CONFORMANCE_BASE)
      await d.apply([{ op: 'add', forward: fwd('tcp', 40000, '10.8.0.2', 80) }, { op: 'add', forward: fwd('udp', 40000, '10.8.0.3', 51820) }])
      for (const map of ['forwards_v4', 'accept_v4']) {
        const r = await ns.exec('nft', ['-j', 'list', 'map', 'inet', 'wgpmp', map])
        expect(r.exitCode).toBe(0)
        const parsed = JSON.parse(r.stdout) as { nftables: { map?: { elem?: unknown[] } }[] }
        const elems = parsed.nftables.find((o) => o.map)?.map?.elem ?? []
        expect(elems, map).toHaveLength(2)
      }
    })

    it('IPv6 forwards and pinholes live beside IPv4 ones, are listed back and deleted by their own keys', async () => {
      ns = await createNetns()
      d = new NftDriver({ exec: ns.exec, nftArgv: ['ip', 'netns', 'exec', ns.name, 'nft'] })
      await d.ensureBase({ ...CONFORMANCE_BASE, publicV6: ['2001:db8:100::1'], guardedV6: ['2001:db8:200::/64'] })
      const v4 = fwd('tcp', 40000, '10.8.0.2', 80)
      const v6 = fwd('tcp', 40000, 'fd42:42::2', 80)
      const pin = { protocol: 'udp' as const, externalPort: 6881, internalAddress: '2001:db8:200::3', internalPort: 6881, pinhole: true }
      await d.apply([{ op: 'add', forward: v4 }, { op: 'add', forward: v6 }, { op: 'add', forward: pin }])
      expect(await d.list()).toEqual([v4, v6, pin])
      await expect(d.apply([{ op: 'add', forward: { ...v6, internalAddress: 'fd42:42::9' } }])).rejects.toMatchObject({ code: 'WGPMP_NFT_EXISTS' })
      await d.apply([{ op: 'delete', forward: v6 }, { op: 'delete', forward: pin }])
      expect(await d.list()).toEqual([v4])
      const table = (await ns.exec('nft', ['list', 'table', 'inet', 'wgpmp'])).stdout
      expect(table).toContain('2001:db8:100::1')
      expect(table).toContain('2001:db8:200::/64')
    })
  })
})
