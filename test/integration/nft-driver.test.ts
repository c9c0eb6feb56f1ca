/** NftDriver against real nft inside throwaway network namespaces: the shared conformance suite, all three modes. */
import { fileURLToPath } from 'node:url'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { Agent } from '../../bench/lib/rpc.js'
import type { BaseParams, DriverDescription, ForwardDriver } from '../../src/drivers/driver.js'
import type { Forward, ForwardChange } from '../../src/core/forward.js'
import { NFT_CAPABILITIES, NftDriver } from '../../src/drivers/nft.js'
import { hasChain } from '../../src/drivers/watch.js'
import { WgpmpError, type ErrorCode } from '../../src/core/errors.js'
import type { ExecResult } from '../../src/core/exec.js'
import { CONFORMANCE_BASE, driverConformance, fwd } from '../drivers/conformance.js'
import { createNetns, removeAllNetns, type Netns } from './netns.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

/**
 * The library mode acts on its own process's namespace, so it runs in a child process inside the
 * test's namespace (nft-lib-agent.ts); this is that driver seen from here, errors and all.
 */
class AgentDriver implements ForwardDriver {
  readonly name = 'nft' as const
  /** What the driver in the agent can do, but its table watch would run there: none from here. */
  readonly capabilities = { ...NFT_CAPABILITIES, watch: false }
  constructor(readonly agent: Agent) {}
  private async call<T>(m: string, p: unknown = {}): Promise<T> {
    try {
      return await this.agent.call<T>(m, p, 30_000)
    } catch (e) {
      const wire = /^[^:]+: (\{.*\})$/s.exec(e instanceof Error ? e.message : '')
      if (!wire) throw e
      const { code, message } = JSON.parse(wire[1]!) as { code: ErrorCode | null; message: string }
      throw code ? new WgpmpError(code, message) : new Error(message)
    }
  }
  ensureBase = (p: BaseParams): Promise<void> => this.call('ensureBase', p)
  apply = (c: readonly ForwardChange[]): Promise<void> => this.call('apply', c)
  list = (): Promise<readonly Forward[]> => this.call('list')
  teardown = (): Promise<void> => this.call('teardown')
  mode = (): Promise<{ mode: string; fallback: string | null }> => this.call('mode')
  listChains = (): Promise<ExecResult> => this.call('listChains')
  describe = (): DriverDescription => ({ driver: 'nft' })
  watchTable = (): null => null
  close = (): void => {}
}

const makeLibrary = async () => {
  const ns = await createNetns()
  const agent = Agent.start('nft-lib-agent', ns.name, 'test/integration/nft-lib-agent.ts', { cwd: ROOT })
  const driver = new AgentDriver(agent)
  return {
    driver,
    ns,
    cleanup: async () => {
      try {
        // Every test first installs the base, so the library must be what ran it.
        expect(await driver.mode()).toEqual({ mode: 'library', fallback: null })
      } finally {
        await agent.stop(5_000)
        await ns.remove()
      }
    },
  }
}

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

  driverConformance('nft (library)', makeLibrary)
  driverConformance('nft (session)', makeIn('session'))
  driverConformance('nft (spawn)', makeIn('spawn'))

  it("library mode: listChains (the table watch's light check) sees our chains through libnftables, and their removal by someone else", async () => {
    const { driver, ns, cleanup } = await makeLibrary()
    const ours = async (): Promise<boolean | null> => {
      const r = await driver.listChains()
      expect(r.exitCode).toBe(0)
      return hasChain(r.stdout, 'inet', 'wgpmp', 'prerouting')
    }
    try {
      expect(await ours()).toBe(false) // no table yet
      await driver.ensureBase(CONFORMANCE_BASE)
      expect(await ours()).toBe(true)
      // Someone else deletes the table: the library's cache must not hide it.
      expect((await ns.exec('nft', ['delete', 'table', 'inet', 'wgpmp'])).exitCode).toBe(0)
      expect(await ours()).toBe(false)
      await driver.ensureBase(CONFORMANCE_BASE) // cleanup checks that the library ran it
    } finally {
      await cleanup()
    }
  })

  describe('nft specifics', () => {
    let ns: Netns | undefined
    let d: NftDriver | undefined
    afterEach(async () => {
      d?.close() // the session's nft process must not outlive the namespace
      d = undefined
      await ns?.remove()
      ns = undefined
    })

    it('a forward is one element of forwards_v4', async () => {
      ns = await createNetns()
      d = new NftDriver({ exec: ns.exec, nftArgv: ['ip', 'netns', 'exec', ns.name, 'nft'] })
      await d.ensureBase(CONFORMANCE_BASE)
      await d.apply([
        { op: 'add', forward: fwd('tcp', 40000, '10.8.0.2', 80) },
        { op: 'add', forward: fwd('udp', 40000, '10.8.0.3', 51820) },
      ])
      for (const map of ['forwards_v4']) {
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
      await d.apply([
        { op: 'add', forward: v4 },
        { op: 'add', forward: v6 },
        { op: 'add', forward: pin },
      ])
      expect(await d.list()).toEqual([v4, v6, pin])
      await expect(d.apply([{ op: 'add', forward: { ...v6, internalAddress: 'fd42:42::9' } }])).rejects.toMatchObject({ code: 'WGPMP_FORWARD_EXISTS' })
      await d.apply([
        { op: 'delete', forward: v6 },
        { op: 'delete', forward: pin },
      ])
      expect(await d.list()).toEqual([v4])
      const table = (await ns.exec('nft', ['list', 'table', 'inet', 'wgpmp'])).stdout
      expect(table).toContain('2001:db8:100::1')
      expect(table).toContain('2001:db8:200::/64')
    })
  })
})

describe.runIf(process.getuid?.() === 0)('nft session', () => {
  it('replaces its nft process every N batches, between batches, and loses nothing', async () => {
    const { NftSession } = await import('../../src/drivers/nft-session.js')
    const { buildBatch } = await import('../../src/drivers/nft-batch.js')
    const ns = await createNetns()
    const session = new NftSession(['ip', 'netns', 'exec', ns.name, 'nft'], 3)
    try {
      const d = new NftDriver({ exec: ns.exec, mode: 'spawn', nftArgv: ['ip', 'netns', 'exec', ns.name, 'nft'] })
      await d.ensureBase(CONFORMANCE_BASE)
      const pids = new Set<number>()
      const runs = Array.from({ length: 10 }, (_, i) => i)
      for (const i of runs) {
        const err = await session.run(JSON.stringify(buildBatch([{ op: 'add', forward: fwd('tcp', 30000 + i) }])))
        expect(err).toBe('')
        if (session.pid !== undefined) pids.add(session.pid)
      }
      // Concurrent batches across a recycle point all settle.
      const errs = await Promise.all(runs.map((i) => session.run(JSON.stringify(buildBatch([{ op: 'add', forward: fwd('udp', 30000 + i) }])))))
      expect(errs).toEqual(runs.map(() => ''))
      expect(await d.list()).toHaveLength(20)
      expect(pids.size).toBeGreaterThanOrEqual(3)
    } finally {
      session.close()
      await ns.remove()
    }
  })
})
