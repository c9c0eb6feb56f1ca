/** Fake ApiDeps for the API and page tests: two peers, NAT-PMP leases, real StaticForwards over an in-memory sink. */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ForwardChange, Protocol } from '../../src/core/forward.js'
import { clientView, staticView, type ApiDeps } from '../../src/http/api.js'
import { createMetrics } from '../../src/http/metrics.js'
import type { ForwardView } from '../../src/http/schemas.js'
import { silentLogger } from '../../src/log.js'
import { type StaticSink, type StaticSinkOutcome } from '../../src/mappings/static.js'
import { StaticForwardStore } from '../../src/state/static-store.js'
import { StaticForwards } from '../../src/forwarder/statics.js'
import { clientId, type TrackedPeer } from '../../src/wireguard/peers.js'

export const SEEDBOX_KEY = 'qbg3cFnfc+/v1QzjyW72aQZxJfy5uxk4H5H1KJtz3RQ='
export const PHONE_KEY = 'hBiRc5/bSoYVl6AsunOuN7+lQDjplQDETqv/Pb8ns0Q='
export const SEEDBOX = clientId(SEEDBOX_KEY)
export const PHONE = clientId(PHONE_KEY)

const peer = (publicKey: string, name: string | null, address: string, connected: boolean, latestHandshake: number): TrackedPeer => ({
  id: clientId(publicKey),
  publicKey,
  name,
  addresses: [address],
  endpoint: connected ? '198.51.100.20:51820' : null,
  allowedIps: [`${address}/32`],
  latestHandshake,
  rxBytes: connected ? 734_003_200 : 0,
  txBytes: connected ? 52_428_800 : 0,
  persistentKeepalive: 25,
  connected,
})

/** One owner per (protocol, port), like the proposed MappingTable.addStatic. */
class MemorySink implements StaticSink {
  readonly held = new Map<string, { address: string; internalPort: number }>()
  constructor(private readonly leases: () => readonly ForwardView[]) {}
  addStatic(address: string, protocol: Protocol, externalPort: number, internalPort: number): StaticSinkOutcome {
    const k = `${protocol}/${externalPort}`
    if (externalPort === 51820) return { ok: false, reason: 'reserved' }
    if (this.leases().some((l) => l.protocol === protocol && l.external_port === externalPort)) return { ok: false, reason: 'taken' }
    const h = this.held.get(k)
    if (h) return h.address === address && h.internalPort === internalPort ? { ok: true, changes: [], undo: () => {} } : { ok: false, reason: 'taken' }
    this.held.set(k, { address, internalPort })
    return { ok: true, changes: [{ op: 'add', forward: { protocol, externalPort, internalAddress: address, internalPort } }], undo: () => this.held.delete(k) }
  }
  removeStatic(address: string, protocol: Protocol, externalPort: number) {
    const k = `${protocol}/${externalPort}`
    const h = this.held.get(k)
    if (!h || h.address !== address) return { changes: [], undo: () => {} }
    this.held.delete(k)
    const c: ForwardChange = { op: 'delete', forward: { protocol, externalPort, internalAddress: address, internalPort: h.internalPort } }
    return { changes: [c], undo: () => this.held.set(k, h) }
  }
}

export interface Fake {
  deps: ApiDeps
  batches: ForwardChange[][]
  /** Makes the next commits reject (a refusing kernel). */
  refuse: (on: boolean) => void
  cleanup: () => Promise<void>
}

export async function fakeDeps(): Promise<Fake> {
  const dir = await mkdtemp(join(tmpdir(), 'wgpmp-api-test-'))
  const now = Math.floor(Date.now() / 1000)
  const peers = [peer(SEEDBOX_KEY, 'seedbox <qbittorrent>', '10.8.0.2', true, now - 42), peer(PHONE_KEY, null, '10.8.0.3', false, now - 3600)]
  const leases: ForwardView[] = [
    {
      id: 'pmp-1',
      client_id: SEEDBOX,
      protocol: 'udp',
      external_port: 51413,
      internal_port: 51413,
      client_address: '10.8.0.2',
      origin: 'nat-pmp',
      lifetime_seconds: 7200,
      seconds_left: 5321,
      created_at: new Date(Date.now() - 1879_000).toISOString(),
      removable: false,
    },
    {
      id: 'pmp-2',
      client_id: SEEDBOX,
      protocol: 'tcp',
      external_port: 51413,
      internal_port: 51413,
      client_address: '10.8.0.2',
      origin: 'nat-pmp',
      lifetime_seconds: 7200,
      seconds_left: 5321,
      created_at: new Date(Date.now() - 1879_000).toISOString(),
      removable: false,
    },
  ]
  const batches: ForwardChange[][] = []
  let refusing = false
  const addressOf = (id: string): string | null => peers.find((p) => p.id === id)?.addresses[0] ?? null
  const sink = new MemorySink(() => leases)
  const sf = new StaticForwards({
    store: new StaticForwardStore([], () => Promise.resolve()),
    sink,
    commit: (c) => {
      if (refusing) return Promise.reject(new Error('nft: refused'))
      if (c.length > 0) batches.push([...c])
      return Promise.resolve()
    },
    addressesOf: (id: string) => peers.find((p) => p.id === id)?.addresses ?? [],
    log: silentLogger(),
  })
  sf.setConfigForwards(new Map([[PHONE, [{ protocol: 'tcp', external: { first: 443, last: 443 }, internal: { first: 8443, last: 8443 } }]]]))
  await sf.activate(PHONE)
  const metrics = createMetrics({
    forwardCounts: () => [
      { protocol: 'udp', origin: 'nat-pmp', count: 1 },
      { protocol: 'tcp', origin: 'nat-pmp', count: 1 },
      { protocol: 'tcp', origin: 'static', count: sink.held.size },
    ],
    peers: () => ({ total: peers.length, connected: peers.filter((p) => p.connected).length }),
  })
  metrics.countRequest(2, 0)
  metrics.countRequest(1, 2)
  metrics.observeBatch(2, 3.2, true)
  const deps: ApiDeps = {
    listForwards: () => [...leases, ...sf.all().map((f) => staticView(f, addressOf(f.client)))],
    listClients: () => peers.map(clientView),
    createStatic: async (id, spec) => {
      const r = await sf.create(id, spec)
      return r.ok ? { ok: true, forward: staticView(r.forward, addressOf(id)) } : r
    },
    deleteForward: (id, fid) => sf.delete(id, fid),
    flushLeases: () => {
      const n = leases.length
      leases.splice(0)
      return Promise.resolve(n)
    },
    metrics: metrics.registry,
    gateway: '10.8.0.1',
  }
  return { deps, batches, refuse: (on) => (refusing = on), cleanup: () => rm(dir, { recursive: true, force: true }) }
}
