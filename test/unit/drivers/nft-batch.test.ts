import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { buildBaseScript, buildBatch, parseForwardsMap } from '../../../src/drivers/nft-batch.js'
import type { Forward } from '../../../src/core/forward.js'

const golden = (name: string): unknown => JSON.parse(readFileSync(new URL(`../../fixtures/nft/${name}`, import.meta.url), 'utf8'))
const tcp8080: Forward = { protocol: 'tcp', externalPort: 8080, internalAddress: '10.8.0.2', internalPort: 80 }
const udp51413: Forward = { protocol: 'udp', externalPort: 51413, internalAddress: '10.8.0.3', internalPort: 51413 }

describe('buildBatch', () => {
  it('adds: one create command, one element per forward (golden)', () => {
    expect(
      buildBatch([
        { op: 'add', forward: tcp8080 },
        { op: 'add', forward: udp51413 },
      ]),
    ).toEqual(golden('add-tcp-8080-udp-51413.json'))
  })
  it('puts deletes before creates so one batch can move a port to another client (golden)', () => {
    const moved: Forward = { ...tcp8080, internalAddress: '10.8.0.3', internalPort: 8080 }
    expect(
      buildBatch([
        { op: 'add', forward: moved },
        { op: 'delete', forward: tcp8080 },
      ]),
    ).toEqual(golden('move-tcp-8080.json'))
  })
  it('is empty for no changes', () => {
    expect(buildBatch([])).toEqual({ nftables: [] })
  })
  it('1,000 forwards are still one command', () => {
    const changes = Array.from({ length: 1000 }, (_, i) => ({ op: 'add' as const, forward: { ...tcp8080, externalPort: 10000 + i } }))
    expect(buildBatch(changes).nftables).toHaveLength(1)
  })
})

describe('IPv6', () => {
  const v6: Forward = { protocol: 'udp', externalPort: 6881, internalAddress: 'fd42:42::2', internalPort: 6881 }
  const pin: Forward = { protocol: 'tcp', externalPort: 443, internalAddress: '2001:db8:200::3', internalPort: 443, pinhole: true }
  it('an IPv6 forward goes to the _v6 maps, a pinhole to pinholes_v6, IPv4 ones stay apart', () => {
    expect(
      buildBatch([
        { op: 'add', forward: v6 },
        { op: 'add', forward: pin },
        { op: 'delete', forward: tcp8080 },
      ]),
    ).toEqual({
      nftables: [
        { delete: { element: { family: 'inet', table: 'wgpmp', name: 'forwards_v4', elem: [{ concat: ['tcp', 8080] }] } } },
        { create: { element: { family: 'inet', table: 'wgpmp', name: 'forwards_v6', elem: [[{ concat: ['udp', 6881] }, { concat: ['fd42:42::2', 6881] }]] } } },
        { create: { element: { family: 'inet', table: 'wgpmp', name: 'pinholes_v6', elem: [{ concat: ['2001:db8:200::3', 'tcp', 443] }] } } },
      ],
    })
  })
  it('list output with all three kinds parses back', () => {
    const out = JSON.stringify({
      nftables: [
        { map: { name: 'forwards_v4', elem: [[{ concat: ['tcp', 8080] }, { concat: ['10.8.0.2', 80] }]] } },
        { map: { name: 'forwards_v6', elem: [[{ concat: ['udp', 6881] }, { concat: ['fd42:42::2', 6881] }]] } },
        { set: { name: 'pinholes_v6', elem: [{ concat: ['2001:db8:200::3', 'tcp', 443] }] } },
        { set: { name: 'public_v6', elem: ['2001:db8:100::1'] } },
      ],
    })
    expect(parseForwardsMap(out)).toEqual([tcp8080, v6, pin])
  })
})

describe('buildBaseScript', () => {
  it('replaces a stale table atomically and fills the parameter sets', () => {
    const s = buildBaseScript('table inet wgpmp {\n}\n', { publicV4: ['198.51.100.1'], wgInterfaces: ['wg0'] })
    expect(s).toBe(
      'table inet wgpmp {}\ndelete table inet wgpmp\ntable inet wgpmp {\n}\n\n' +
        'add element inet wgpmp public_v4 { 198.51.100.1 }\nadd element inet wgpmp wg_ifnames { "wg0" }\n',
    )
  })
  it('renames the table for tests that use another', () => {
    expect(buildBaseScript('table inet wgpmp {\n}', { publicV4: [], wgInterfaces: [] }, 'wgpmp_t1')).toBe(
      'table inet wgpmp_t1 {}\ndelete table inet wgpmp_t1\ntable inet wgpmp_t1 {\n}\n',
    )
  })
})

describe('parseForwardsMap', () => {
  it('reads nft -j list map output', () => {
    expect(parseForwardsMap(JSON.stringify(golden('list-forwards_v4.json')))).toEqual([udp51413, tcp8080])
  })
  it('returns nothing for an empty map', () => {
    expect(parseForwardsMap('{"nftables":[{"map":{"name":"forwards_v4"}}]}')).toEqual([])
  })
  it('fills public_v6 when given', () => {
    expect(buildBaseScript('', { publicV4: [], publicV6: ['2001:db8:100::1'], wgInterfaces: [] })).toContain(
      'add element inet wgpmp public_v6 { 2001:db8:100::1 }',
    )
  })
})
