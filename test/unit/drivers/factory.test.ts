/** createDriver: the one place that picks a driver class; what each driver declares. */
import { describe, expect, it } from 'vitest'
import type { Exec } from '../../../src/core/exec.js'
import { systemClock } from '../../../src/core/clock.js'
import { createDriver } from '../../../src/drivers/factory.js'
import { createLogger } from '../../../src/log.js'

/** An exec that must never run: making a driver, describing it or making its watcher starts nothing. */
const noExec: Exec = (file) => Promise.reject(new Error(`unexpected exec of ${file}`))
const hooks = { clock: systemClock, log: createLogger('silent'), onLost: () => {} }

describe('createDriver', () => {
  it('nft: IPv6, a table watch, removals in chunks of 250, and the mode it runs', async () => {
    const d = createDriver({ driver: 'nft', nftMode: 'spawn', exec: noExec })
    expect(d.name).toBe('nft')
    expect(d.capabilities).toEqual({ ipv6: true, watch: true, bulkDeleteChunk: 250, kernel: true })
    expect(d.describe()).toEqual({ driver: 'nft', mode: 'spawn' })
    const w = d.watchTable(hooks)
    expect(w).not.toBeNull()
    await w!.stop() // never started: nothing to stop, no process
    d.close()
  })

  it('nft without a mode asks for the library', () => {
    const d = createDriver({ driver: 'nft', exec: noExec })
    expect(d.describe()).toEqual({ driver: 'nft', mode: 'library' })
    d.close()
  })

  it('iptables: IPv4 only, no watch, one rebuild per large removal', () => {
    const d = createDriver({ driver: 'iptables', exec: noExec })
    expect(d.name).toBe('iptables')
    expect(d.capabilities).toEqual({ ipv6: false, watch: false, bulkDeleteChunk: 20_000, kernel: true })
    expect(d.describe()).toEqual({ driver: 'iptables' })
    expect(d.watchTable(hooks)).toBeNull()
    d.close()
  })

  it('memory: IPv6, no watch, not the kernel', async () => {
    const d = createDriver({ driver: 'memory', exec: noExec })
    expect(d.name).toBe('memory')
    expect(d.capabilities).toEqual({ ipv6: true, watch: false, bulkDeleteChunk: 250, kernel: false })
    expect(d.describe()).toEqual({ driver: 'memory' })
    expect(d.watchTable(hooks)).toBeNull()
    await d.ensureBase({ publicV4: ['203.0.113.7'], wgInterfaces: ['wg0'] })
    await d.apply([{ op: 'add', forward: { protocol: 'tcp', externalPort: 1, internalAddress: '10.8.0.2', internalPort: 1 } }])
    expect(await d.list()).toHaveLength(1)
  })

  it('a capability says the same as the watcher: watch is true exactly when watchTable gives one', () => {
    for (const driver of ['nft', 'iptables', 'memory'] as const) {
      const d = createDriver({ driver, exec: noExec })
      expect(d.watchTable(hooks) !== null, driver).toBe(d.capabilities.watch)
      d.close()
    }
  })
})
