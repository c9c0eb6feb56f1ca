/** The forwarder alone: admission, kernel refusal and undo, renewal after an in-flight commit, chunked removal, events. */
import { describe, expect, it } from 'vitest'
import { FakeClock } from '../../../src/core/clock.js'
import type { ForwardChange, Lease } from '../../../src/core/forward.js'
import { Forwarder, type RemovalReason } from '../../../src/forwarder/forwarder.js'
import { silentLogger } from '../../../src/log.js'
import { MappingTable } from '../../../src/mappings/table.js'

const A = '10.8.0.2'
const B = '10.8.0.3'

function setup(o: { chunk?: number } = {}) {
  const table = new MappingTable({ clock: new FakeClock(0), minPort: 1024, maxPort: 65535, minLifetimeSeconds: 120, maxLifetimeSeconds: 7200 })
  const batches: ForwardChange[][] = []
  let refuse = false
  let hold: Promise<void> | null = null
  const events: string[] = []
  let changed = 0
  const forwarder = new Forwarder({
    table,
    chunk: o.chunk ?? 250,
    log: silentLogger(),
    isClient: (a) => a === A || a === B,
    changed: () => void changed++,
    commit: async (c) => {
      if (hold) await hold
      if (refuse) throw new Error('kernel says no')
      batches.push([...c])
    },
    events: {
      created: (l: Lease) => void events.push(`created ${l.protocol}/${l.externalPort}`),
      refused: (l: Lease) => void events.push(`refused ${l.protocol}/${l.externalPort}`),
      removed: (ls: readonly Lease[], why: RemovalReason) => void events.push(`removed ${ls.length} ${why}`),
    },
  })
  return {
    table,
    forwarder,
    batches,
    events,
    changed: () => changed,
    refuse: (v: boolean) => (refuse = v),
    hold: (p: Promise<void> | null): void => {
      hold = p
    },
  }
}

const req = (client: string, internalPort: number, suggested = 0) =>
  ({ client, protocol: 'tcp', internalPort, suggestedExternalPort: suggested, lifetimeSeconds: 3600, origin: 'nat-pmp' }) as const

describe('Forwarder', () => {
  it('refuses a sender that is not a client, and changes nothing', async () => {
    const t = setup()
    expect(await t.forwarder.map(req('10.8.0.99', 80))).toEqual({ ok: false, refusal: 'not-a-client' })
    expect(await t.forwarder.delete({ client: '10.8.0.99', protocols: ['tcp'], internalPort: 0, via: 'pcp' })).toEqual({ ok: false, refusal: 'not-a-client' })
    expect(t.table.size).toBe(0)
    expect(t.batches).toEqual([])
  })

  it('a kernel refusal undoes the table change and is a refusal, not a throw', async () => {
    const t = setup()
    t.refuse(true)
    expect(await t.forwarder.map(req(A, 80))).toEqual({ ok: false, refusal: 'kernel-refused' })
    expect(t.table.size).toBe(0)
    expect(t.events).toEqual([expect.stringMatching(/^refused tcp\/\d+$/)])
    t.refuse(false)
    const r = await t.forwarder.map(req(A, 80))
    expect(r.ok && r.created).toBe(true)
    expect(t.events).toHaveLength(2)
  })

  it('a renewal of a lease whose first commit is in flight resolves only after that commit', async () => {
    const t = setup()
    let release!: () => void
    t.hold(new Promise<void>((r) => (release = r)))
    const first = t.forwarder.map(req(A, 80))
    const order: string[] = []
    const renewal = t.forwarder.map(req(A, 80)).then((r) => (order.push('renewal'), r))
    await new Promise((r) => setImmediate(r))
    expect(order).toEqual([])
    order.push('commit')
    release()
    const [a, b] = await Promise.all([first, renewal])
    expect(order).toEqual(['commit', 'renewal'])
    expect(a.ok && b.ok && a.lease.externalPort === b.lease.externalPort).toBe(true)
    expect(b.ok && b.created).toBe(false)
  })

  it('a delete-all goes in rounds of `chunk`, each committed before the next frees ports', async () => {
    const t = setup({ chunk: 4 })
    for (let p = 1; p <= 10; p++) await t.forwarder.map(req(A, p))
    t.batches.length = 0
    const r = await t.forwarder.delete({ client: A, protocols: ['tcp'], internalPort: 0, via: 'nat-pmp' })
    expect(r.ok && r.removed.length).toBe(10)
    expect(t.batches.map((b) => b.length)).toEqual([4, 4, 2])
    expect(t.events.at(-1)).toBe('removed 10 deleted')
  })

  it('a PCP delete with another nonce is refused and leaves the mapping', async () => {
    const t = setup()
    await t.forwarder.map({ ...req(A, 80), origin: 'pcp', nonce: 'a'.repeat(24) })
    expect(await t.forwarder.delete({ client: A, protocols: ['tcp'], internalPort: 80, nonce: 'b'.repeat(24), via: 'pcp' })).toEqual({
      ok: false,
      refusal: 'nonce-mismatch',
    })
    expect(t.table.size).toBe(1)
  })

  it('withdraw and flush remove leases with their reason and keep the other client', async () => {
    const t = setup()
    await t.forwarder.map(req(A, 80))
    await t.forwarder.map(req(A, 81))
    await t.forwarder.map(req(B, 80))
    expect(await t.forwarder.withdraw(A, 'peer disconnected')).toHaveLength(2)
    expect(t.table.leasesOf(B)).toHaveLength(1)
    expect(await t.forwarder.flush()).toBe(1)
    expect(t.events.filter((e) => e.startsWith('removed'))).toEqual(['removed 2 peer-disconnected', 'removed 1 flushed'])
    expect(t.changed()).toBeGreaterThanOrEqual(5)
  })
})
