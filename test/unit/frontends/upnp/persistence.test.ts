/** UPnP leases in the state file, the API view and the table: origin upnp and the description survive a restart. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { leaseView } from '../../../../src/http/api.js'
import { FakeClock } from '../../../../src/core/clock.js'
import { MappingTable } from '../../../../src/mappings/table.js'
import { loadState, renderState, restorable, snapshot } from '../../../../src/state/store.js'
import { dynamicOrigin as persistedOrigin } from '../../../../src/core/forward.js'

const table = (clock: FakeClock) =>
  new MappingTable({ clock, minPort: 1024, maxPort: 65535, minLifetimeSeconds: 120, maxLifetimeSeconds: 7200, upnpMaxLifetimeSeconds: 604800 })

describe('UPnP leases persist', () => {
  it('each origin is saved by its own name (an unknown one is no longer saved as nat-pmp by accident)', () => {
    expect(persistedOrigin('upnp')).toBe('upnp')
    expect(persistedOrigin('pcp')).toBe('pcp')
    expect(persistedOrigin('nat-pmp')).toBe('nat-pmp')
    expect(() => persistedOrigin('static')).toThrow(RangeError) // a static forward is never a lease record
  })

  it('a upnp lease with a description is written, validated on load, and restored with both', async () => {
    const clock = new FakeClock()
    const t = table(clock)
    const out = t.map({
      client: '10.8.0.2',
      protocol: 'tcp',
      internalPort: 6881,
      suggestedExternalPort: 6881,
      lifetimeSeconds: 0 + 604800,
      maxLifetimeSeconds: 604800,
      origin: 'upnp',
      description: 'Tom & "Jerry" <3',
    })
    expect(out.ok && out.lease.lifetimeSeconds).toBe(604800) // past maxLifetimeSeconds 7200: the UPnP cap applies
    t.map({ client: '10.8.0.2', protocol: 'udp', internalPort: 6881, suggestedExternalPort: 6881, lifetimeSeconds: 3600 }) // nat-pmp, no description
    const now = 1_800_000_000_000
    const text = await renderState(t.leases(), 0, clock, now)
    expect(text).toBe(JSON.stringify(snapshot(t.leases(), 0, clock, now)) + '\n') // the hand-written JSON equals the generic one
    const dir = await mkdtemp(join(tmpdir(), 'wgpmp-upnp-'))
    try {
      await writeFile(join(dir, 'state.json'), text)
      const loaded = await loadState(join(dir, 'state.json'), now)
      expect(loaded).toMatchObject({ ok: true })
      if (!('state' in loaded) || !loaded.state) throw new Error(`not loaded: ${JSON.stringify(loaded)}`)
      const r = restorable(loaded.state, clock, now)
      const t2 = table(new FakeClock())
      for (const l of r.leases) expect(t2.restore(l).ok).toBe(true)
      expect(t2.get('10.8.0.2', 'tcp', 6881)).toMatchObject({ origin: 'upnp', description: 'Tom & "Jerry" <3', lifetimeSeconds: 604800 })
      expect(t2.get('10.8.0.2', 'udp', 6881)).toMatchObject({ origin: 'nat-pmp' })
      expect(t2.get('10.8.0.2', 'udp', 6881)?.description).toBeUndefined()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('a UPnP re-add of a NAT-PMP lease makes it upnp with the description; undo puts both back', () => {
    const clock = new FakeClock()
    const t = table(clock)
    t.map({ client: '10.8.0.2', protocol: 'tcp', internalPort: 80, suggestedExternalPort: 8080, lifetimeSeconds: 3600 })
    const r = t.map({
      client: '10.8.0.2',
      protocol: 'tcp',
      internalPort: 80,
      suggestedExternalPort: 8080,
      lifetimeSeconds: 3600,
      origin: 'upnp',
      description: 'web',
    })
    expect(t.get('10.8.0.2', 'tcp', 80)).toMatchObject({ origin: 'upnp', description: 'web' })
    if (r.ok) r.undo()
    expect(t.get('10.8.0.2', 'tcp', 80)?.origin).toBe('nat-pmp')
    expect(t.get('10.8.0.2', 'tcp', 80)?.description).toBeUndefined()
  })

  it('the API view carries origin upnp and the description as given (the page sets it as text)', () => {
    const clock = new FakeClock()
    const t = table(clock)
    const out = t.map({
      client: '10.8.0.2',
      protocol: 'tcp',
      internalPort: 80,
      suggestedExternalPort: 8080,
      lifetimeSeconds: 3600,
      origin: 'upnp',
      description: '<img src=x onerror=alert(1)>',
    })
    if (!out.ok) throw new Error('not mapped')
    expect(leaseView(out.lease, 'peer', clock.now(), Date.now())).toMatchObject({ origin: 'upnp', description: '<img src=x onerror=alert(1)>' })
  })
})
