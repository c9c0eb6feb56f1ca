/** Pure builders for wgpmp's nftables input: the base-ruleset script and `nft -j` element batches. */
import type { BaseParams, Forward, ForwardChange } from './driver.js'

export const TABLE_FAMILY = 'inet'
export const TABLE_NAME = 'wgpmp'
export const MAP_FORWARDS_V4 = 'forwards_v4'
export const MAP_ACCEPT_V4 = 'accept_v4'

type Json = null | boolean | number | string | Json[] | { [k: string]: Json }
export interface NftBatch {
  nftables: Json[]
}

const elemTarget = (table: string, name: string, elem: Json[]): Json => ({
  element: { family: TABLE_FAMILY, table, name, elem },
})

const forwardElem = (f: Forward): Json => [
  { concat: [f.protocol, f.externalPort] },
  { concat: [f.internalAddress, f.internalPort] },
]
const acceptElem = (f: Forward): Json => [{ concat: [f.protocol, f.externalPort] }, { accept: null }]
const keyElem = (f: Forward): Json => ({ concat: [f.protocol, f.externalPort] })

/**
 * One atomic batch for a list of changes: each forward is one element of forwards_v4 (the DNAT
 * data map) and one of accept_v4 (the forward-hook verdict map). Deletes come first so that a
 * batch may move a key to a new target. An empty list gives an empty batch.
 */
export function buildBatch(changes: readonly ForwardChange[], table = TABLE_NAME): NftBatch {
  const dels = changes.filter((c) => c.op === 'delete').map((c) => c.forward)
  const adds = changes.filter((c) => c.op === 'add').map((c) => c.forward)
  const cmds: Json[] = []
  if (dels.length > 0) {
    cmds.push({ delete: elemTarget(table, MAP_FORWARDS_V4, dels.map(keyElem)) })
    cmds.push({ delete: elemTarget(table, MAP_ACCEPT_V4, dels.map(keyElem)) })
  }
  if (adds.length > 0) {
    // `create` (not `add`) fails on an existing key, so a collision can never overwrite silently.
    cmds.push({ create: elemTarget(table, MAP_FORWARDS_V4, adds.map(forwardElem)) })
    cmds.push({ create: elemTarget(table, MAP_ACCEPT_V4, adds.map(acceptElem)) })
  }
  return { nftables: cmds }
}

const quote = (s: string): string => JSON.stringify(s)

/**
 * The text given to `nft -f -` at start: create-then-delete our table (so a stale one from an
 * earlier run goes, and a missing one is no error), the base ruleset, and its parameter sets, all
 * in one transaction. Interface names are quoted; addresses are validated by the config loader.
 */
export function buildBaseScript(baseRuleset: string, params: BaseParams, table = TABLE_NAME): string {
  const lines = [`table ${TABLE_FAMILY} ${table} {}`, `delete table ${TABLE_FAMILY} ${table}`, baseRuleset.replace(/table inet wgpmp \{/, `table ${TABLE_FAMILY} ${table} {`)]
  if (params.publicV4.length > 0) lines.push(`add element ${TABLE_FAMILY} ${table} public_v4 { ${params.publicV4.join(', ')} }`)
  if (params.wgInterfaces.length > 0) lines.push(`add element ${TABLE_FAMILY} ${table} wg_ifnames { ${params.wgInterfaces.map(quote).join(', ')} }`)
  return lines.join('\n') + '\n'
}

/** Parses `nft -j list map inet wgpmp forwards_v4` output into forwards (unsorted). Unknown shapes are skipped. */
export function parseForwardsMap(json: string): Forward[] {
  const out: Forward[] = []
  const doc = JSON.parse(json) as { nftables?: unknown[] }
  for (const item of doc.nftables ?? []) {
    const map = (item as { map?: { elem?: unknown[] } }).map
    for (const e of map?.elem ?? []) {
      if (!Array.isArray(e) || e.length !== 2) continue
      const k = (e[0] as { concat?: unknown[] }).concat
      const v = (e[1] as { concat?: unknown[] }).concat
      if (!k || !v) continue
      const [protocol, externalPort] = k
      const [internalAddress, internalPort] = v
      if ((protocol === 'tcp' || protocol === 'udp') && typeof externalPort === 'number' && typeof internalAddress === 'string' && typeof internalPort === 'number') {
        out.push({ protocol: protocol, externalPort, internalAddress, internalPort })
      }
    }
  }
  return out
}
