import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { buildBaseScript, buildBatch, parseForwardsMap } from '../../../src/drivers/nft-batch.js'
import type { Forward } from '../../../src/drivers/driver.js'

const golden = (name: string): unknown => JSON.parse(readFileSync(new URL(`../../fixtures/nft/${name}`, import.meta.url), 'utf8'))
const tcp8080: Forward = { protocol: 'tcp', externalPort: 8080, internalAddress: '10.8.0.2', internalPort: 80 }
const udp51413: Forward = { protocol: 'udp', externalPort: 51413, internalAddress: '10.8.0.3', internalPort: 51413 }

describe('buildBatch', () => {
  it('adds: one create per map, every forward in each (golden)', () => {
    expect(buildBatch([{ op: 'add', forward: tcp8080 }, { op: 'add', forward: udp51413 }])).toEqual(golden('add-tcp-8080-udp-51413.json'))
  })
  it('puts deletes before creates so one batch can move a port to another client (golden)', () => {
    const moved: Forward = { ...tcp8080, internalAddress: '10.8.0.3', internalPort: 8080 }
    expect(buildBatch([{ op: 'add', forward: moved }, { op: 'delete', forward: tcp8080 }])).toEqual(golden('move-tcp-8080.json'))
  })
  it('is empty for no changes', () => {
    expect(buildBatch([])).toEqual({ nftables: [] })
  })
  it('1,000 forwards are still 2 commands', () => {
    const changes = Array.from({ length: 1000 }, (_, i) => ({ op: 'add' as const, forward: { ...tcp8080, externalPort: 10000 + i } }))
    expect(buildBatch(changes).nftables).toHaveLength(2)
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
})
