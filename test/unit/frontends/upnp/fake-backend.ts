/**
 * The real ForwarderBackend over a real Forwarder and MappingTable, with an in-memory "kernel" (a
 * list of committed changes that can be told to refuse): what UPnP unit tests and the fixture
 * capture run against.
 */
import { FakeClock } from '../../../../src/core/clock.js'
import type { ForwardChange } from '../../../../src/core/forward.js'
import { Forwarder } from '../../../../src/forwarder/forwarder.js'
import { ForwarderBackend } from '../../../../src/frontends/upnp/forwarder-backend.js'
import { silentLogger } from '../../../../src/log.js'
import { MappingTable } from '../../../../src/mappings/table.js'

export interface FakeBackendOptions {
  clients: string[]
  publicAddress?: string
  minPort?: number
  maxPort?: number
  maxPerClient?: number
  reserved?: number[]
  leaseCapSeconds?: number
}

export class FakeBackend extends ForwarderBackend {
  readonly clock: FakeClock
  readonly table: MappingTable
  readonly commits: ForwardChange[][] = []
  /** The next commit rejects (the kernel refused). */
  refuseNext = false
  changedCalls = 0

  constructor(o: FakeBackendOptions) {
    const clock = new FakeClock()
    const table = new MappingTable({
      clock,
      minPort: o.minPort ?? 1024,
      maxPort: o.maxPort ?? 65535,
      minLifetimeSeconds: 120,
      maxLifetimeSeconds: 7200,
      maxPerClient: o.maxPerClient ?? 128,
      isReserved: (p) => (o.reserved ?? []).includes(p),
      random: () => 0.5,
    })
    const state = { self: null as FakeBackend | null }
    const forwarder = new Forwarder({
      table,
      chunk: 250,
      log: silentLogger(),
      commit: (changes) => {
        const me = state.self!
        if (changes.length === 0) return Promise.resolve() // a renewal: nothing for the kernel
        if (me.refuseNext) {
          me.refuseNext = false
          return Promise.reject(new Error('refused'))
        }
        me.commits.push([...changes])
        return Promise.resolve()
      },
      changed: () => void state.self!.changedCalls++,
      isClient: (a) => o.clients.includes(a),
    })
    super({ forwarder, publicAddress: () => o.publicAddress ?? '203.0.113.7', leaseCapSeconds: o.leaseCapSeconds ?? 604800 })
    state.self = this
    this.clock = clock
    this.table = table
  }
}
