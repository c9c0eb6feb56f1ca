/**
 * Hot path: the lease table at 10, 1,000 and 10,000 leases (knftables-style size sweep). Each
 * table is filled once, outside the measured functions; a measured new mapping is removed again
 * so the size stays put, and expiry is measured by moving a fake clock over one due lease.
 */
import { bench, describe } from 'vitest'
import type { Clock } from '../src/core/clock.js'
import { MappingTable } from '../src/mappings/table.js'

const client = (i: number): string => `10.8.${128 + (i >> 8)}.${i & 255}`

/** A clock the bench sets by hand (forward to make a lease due, back again), so iterations stay alike. */
class HandClock implements Clock {
  t = 1_000
  wall(): number {
    return Date.now()
  }
  now(): number {
    return this.t
  }
  setTimer(): () => void {
    return () => {}
  }
}

function filled(n: number): { table: MappingTable; clock: HandClock } {
  const clock = new HandClock()
  let seed = 42
  const random = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000
  const table = new MappingTable({ clock, minPort: 1024, maxPort: 65535, minLifetimeSeconds: 2, maxLifetimeSeconds: 7200, random })
  for (let i = 0; i < n; i++)
    table.map({
      client: client(1 + (i % 1000)),
      protocol: i % 2 ? 'udp' : 'tcp',
      internalPort: 10000 + Math.floor(i / 2000),
      suggestedExternalPort: 0,
      lifetimeSeconds: 3600,
    })
  return { table, clock }
}

for (const n of [10, 1000, 10_000]) {
  describe(`MappingTable with ${n.toLocaleString('en')} leases`, () => {
    const { table, clock } = filled(n)
    let k = 0
    bench('map (new) + remove', () => {
      const c = client(5000 + (k++ % 2000))
      table.map({ client: c, protocol: 'tcp', internalPort: 18080, suggestedExternalPort: 0, lifetimeSeconds: 3600 })
      table.remove(c, 'tcp', 18080)
    })
    bench('map (renewal)', () => {
      table.map({ client: client(1), protocol: 'tcp', internalPort: 10000, suggestedExternalPort: 0, lifetimeSeconds: 3600 })
    })
    bench('expire one due lease (takeExpired)', () => {
      const c = client(9000)
      table.map({ client: c, protocol: 'udp', internalPort: 1, suggestedExternalPort: 0, lifetimeSeconds: 2 })
      clock.t += 2_000
      table.takeExpired()
      clock.t -= 2_000
    })
  })
}
