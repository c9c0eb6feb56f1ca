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
  })
})
