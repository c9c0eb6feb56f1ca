/** Pure builders for wgpmp's nftables input: the base-ruleset script and `nft -j` element batches. */
import type { ErrorCode } from '../core/errors.js'
import { type BaseParams } from './driver.js'
import { isV6, type Forward, type ForwardChange, type Protocol } from '../core/forward.js'

export const TABLE_FAMILY = 'inet'
export const TABLE_NAME = 'wgpmp'
export const MAP_FORWARDS_V4 = 'forwards_v4'
export const MAP_FORWARDS_V6 = 'forwards_v6'
export const SET_PINHOLES_V6 = 'pinholes_v6'

type Json = null | boolean | number | string | Json[] | { [k: string]: Json }
export interface NftBatch {
  nftables: Json[]
}

const elemTarget = (table: string, name: string, elem: Json[]): Json => ({
  element: { family: TABLE_FAMILY, table, name, elem },
})

const forwardElem = (f: Forward): Json => [{ concat: [f.protocol, f.externalPort] }, { concat: [f.internalAddress, f.internalPort] }]
const keyElem = (f: Forward): Json => ({ concat: [f.protocol, f.externalPort] })
const pinholeElem = (f: Forward): Json => ({ concat: [f.internalAddress, f.protocol, f.internalPort] })

/**
 * One atomic batch for a list of changes: each forward is one element of forwards_v4 (the DNAT
 * data map, which the forward hook also uses as its accept set), of forwards_v6 for an IPv6
 * forward, or of pinholes_v6 for a pinhole. Deletes come first so that a batch may move a key to a
 * new target. An empty list gives an empty batch.
 */
export function buildBatch(changes: readonly ForwardChange[], table = TABLE_NAME): NftBatch {
  const dels = changes.filter((c) => c.op === 'delete').map((c) => c.forward)
  const adds = changes.filter((c) => c.op === 'add').map((c) => c.forward)
  const cmds: Json[] = []
  const groups = (fs: Forward[]) => ({
    v4: fs.filter((f) => f.pinhole !== true && !isV6(f.internalAddress)),
    v6: fs.filter((f) => f.pinhole !== true && isV6(f.internalAddress)),
    pin: fs.filter((f) => f.pinhole === true),
  })
  const d = groups(dels)
  const a = groups(adds)
  for (const [fs, map] of [
    [d.v4, MAP_FORWARDS_V4],
    [d.v6, MAP_FORWARDS_V6],
  ] as const) {
    if (fs.length > 0) cmds.push({ delete: elemTarget(table, map, fs.map(keyElem)) })
  }
  if (d.pin.length > 0) cmds.push({ delete: elemTarget(table, SET_PINHOLES_V6, d.pin.map(pinholeElem)) })
  // `create` (not `add`) fails on an existing key, so a collision can never overwrite silently.
  for (const [fs, map] of [
    [a.v4, MAP_FORWARDS_V4],
    [a.v6, MAP_FORWARDS_V6],
  ] as const) {
    if (fs.length > 0) cmds.push({ create: elemTarget(table, map, fs.map(forwardElem)) })
  }
  if (a.pin.length > 0) cmds.push({ create: elemTarget(table, SET_PINHOLES_V6, a.pin.map(pinholeElem)) })
  return { nftables: cmds }
}

const quote = (s: string): string => JSON.stringify(s)

/**
 * The text given to `nft -f -` at start: create-then-delete our table (so a stale one from an
 * earlier run goes, and a missing one is no error), the base ruleset, and its parameter sets, all
 * in one transaction. Interface names are quoted; addresses are validated by the config loader.
 */
export function buildBaseScript(baseRuleset: string, params: BaseParams, table = TABLE_NAME): string {
  const lines = [
    `table ${TABLE_FAMILY} ${table} {}`,
    `delete table ${TABLE_FAMILY} ${table}`,
    baseRuleset.replace(/table inet wgpmp \{/, `table ${TABLE_FAMILY} ${table} {`),
  ]
  if (params.publicV4.length > 0) lines.push(`add element ${TABLE_FAMILY} ${table} public_v4 { ${params.publicV4.join(', ')} }`)
  if (params.publicV6 && params.publicV6.length > 0) lines.push(`add element ${TABLE_FAMILY} ${table} public_v6 { ${params.publicV6.join(', ')} }`)
  if (params.guardedV6 && params.guardedV6.length > 0) lines.push(`add element ${TABLE_FAMILY} ${table} guarded_v6 { ${params.guardedV6.join(', ')} }`)
  if (params.wgInterfaces.length > 0) lines.push(`add element ${TABLE_FAMILY} ${table} wg_ifnames { ${params.wgInterfaces.map(quote).join(', ')} }`)
  const wgOnly = (params.wgOnly ?? []).filter((s) => (s.protocol === 'tcp' || s.protocol === 'udp') && Number.isInteger(s.port) && s.port > 0 && s.port < 65536)
  if (wgOnly.length > 0) lines.push(`add element ${TABLE_FAMILY} ${table} wg_only { ${wgOnly.map((s) => `${s.protocol} . ${s.port}`).join(', ')} }`) // UPnP
  return lines.join('\n') + '\n'
}

const isProtocol = (p: unknown): p is Protocol => p === 'tcp' || p === 'udp'

/**
 * Parses `nft -j list table inet wgpmp` (or `list map ... forwards_v4`) output into forwards
 * (unsorted): the elements of forwards_v4, forwards_v6 and pinholes_v6. Unknown shapes are skipped.
 */
export function parseForwardsMap(json: string): Forward[] {
  const out: Forward[] = []
  const doc = JSON.parse(json) as { nftables?: unknown[] }
  for (const item of doc.nftables ?? []) {
    const set = (item as { set?: { name?: string; elem?: unknown[] } }).set
    if (set?.name === SET_PINHOLES_V6) {
      for (const e of set.elem ?? []) {
        const [addr, protocol, port] = (e as { concat?: unknown[] }).concat ?? []
        if (typeof addr === 'string' && isProtocol(protocol) && typeof port === 'number') {
          out.push({ protocol, externalPort: port, internalAddress: addr, internalPort: port, pinhole: true })
        }
      }
      continue
    }
    const map = (item as { map?: { name?: string; elem?: unknown[] } }).map
    if (map?.name !== undefined && map.name !== MAP_FORWARDS_V4 && map.name !== MAP_FORWARDS_V6) continue
    for (const e of map?.elem ?? []) {
      if (!Array.isArray(e) || e.length !== 2) continue
      const k = (e[0] as { concat?: unknown[] }).concat
      const v = (e[1] as { concat?: unknown[] }).concat
      if (!k || !v) continue
      const [protocol, externalPort] = k
      const [internalAddress, internalPort] = v
      if (
        (protocol === 'tcp' || protocol === 'udp') &&
        typeof externalPort === 'number' &&
        typeof internalAddress === 'string' &&
        typeof internalPort === 'number'
      ) {
        out.push({ protocol: protocol, externalPort, internalAddress, internalPort })
      }
    }
  }
  return out
}

/** Maps nft's stderr to a stable code (knftables' wrapError). */
export function nftErrorCode(stderr: string): ErrorCode {
  if (/File exists/i.test(stderr)) return 'WGPMP_FORWARD_EXISTS'
  if (/No such file or directory/i.test(stderr)) return 'WGPMP_FORWARD_MISSING'
  return 'WGPMP_KERNEL_REFUSED'
}
