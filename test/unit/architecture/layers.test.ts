/**
 * The layers of src/, enforced: a module imports only its own folder and folders of a lower
 * layer. The matrix is written once, here; CONTRIBUTING.md explains it. A new folder must be
 * placed in it (the test fails for a folder it does not know).
 */
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

/** Lowest first. A folder may import folders of lower layers only (and its own). */
export const LAYERS: readonly (readonly string[])[] = [
  ['core', 'log'], // what everything shares; core imports nothing of ours
  ['protocol'], // pure wire codecs
  ['mappings', 'drivers', 'host', 'wireguard', 'server'], // lease state, the kernel, the host, peers, sockets: independent of each other
  ['config', 'state'], // the config file; the state file (which holds leases and static forwards)
  ['forwarder'], // the protocol-neutral lease service
  ['frontends', 'http', 'notify'], // protocols, the API and page, notifications: each on the forwarder, none on another
  ['cli'],
  ['daemon'], // the composition root
  ['main'], // the process edge
]

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../../src')
const layerOf = new Map<string, number>(LAYERS.flatMap((names, i) => names.map((n) => [n, i] as const)))

/** "frontends/natpmp/service.ts" -> "frontends"; "daemon.ts" -> "daemon". */
const unitOf = (rel: string): string => (rel.includes('/') ? rel.slice(0, rel.indexOf('/')) : rel.replace(/\.ts$/, ''))

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  )
}

/** Relative imports and re-exports of a file, static and dynamic. */
export function importsOf(text: string): string[] {
  const out: string[] = []
  for (const m of text.matchAll(
    /(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s*['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)|(?:^|\n)\s*import\s+['"](\.[^'"]+)['"]/g,
  )) {
    const spec = m[1] ?? m[2] ?? m[3]
    if (spec !== undefined) out.push(spec)
  }
  return out
}

export function violations(files: readonly { rel: string; text: string }[]): string[] {
  const bad: string[] = []
  for (const f of files) {
    const from = unitOf(f.rel)
    const fromLayer = layerOf.get(from)
    if (fromLayer === undefined) {
      bad.push(`${f.rel}: folder "${from}" is in no layer (add it to LAYERS)`)
      continue
    }
    for (const spec of importsOf(f.text)) {
      const target = relative(SRC, resolve(join(SRC, dirname(f.rel)), spec)).replace(/\.js$/, '.ts')
      if (target.startsWith('..')) {
        bad.push(`${f.rel}: imports ${spec}, outside src/`)
        continue
      }
      const to = unitOf(target)
      if (to === from) continue
      const toLayer = layerOf.get(to)
      if (toLayer === undefined || toLayer >= fromLayer) bad.push(`${f.rel} (${from}, layer ${fromLayer}) imports ${target} (${to}, layer ${toLayer ?? '?'})`)
    }
  }
  return bad
}

describe('layers of src/', () => {
  const files = sources(SRC).map((p) => ({ rel: relative(SRC, p), text: readFileSync(p, 'utf8') }))

  it('every import goes to the same folder or a lower layer', () => {
    expect(files.length).toBeGreaterThan(40)
    expect(violations(files)).toEqual([])
  })

  it('core imports nothing of ours outside core', () => {
    const core = files.filter((f) => f.rel.startsWith('core/'))
    expect(core.length).toBeGreaterThan(3)
    for (const f of core)
      for (const spec of importsOf(f.text))
        expect(resolve(join(SRC, dirname(f.rel)), spec).startsWith(join(SRC, 'core')), `${f.rel} imports ${spec}`).toBe(true)
  })

  it('outside drivers/, nothing asks which driver runs (no instanceof, no name checks): it asks the capabilities', () => {
    const outside = files.filter((f) => !f.rel.startsWith('drivers/'))
    for (const f of outside) {
      expect(f.text, f.rel).not.toMatch(/instanceof\s+(NftDriver|IptablesDriver|MemoryDriver)\b/)
      expect(f.text, f.rel).not.toMatch(/driver\.name\s*[!=]==/)
      expect(f.text, f.rel).not.toMatch(/new\s+(NftDriver|IptablesDriver)\(/)
    }
  })

  it('the rule catches an upward import, a same-layer import and an unknown folder', () => {
    expect(violations([{ rel: 'mappings/table.ts', text: "import { Forwarder } from '../forwarder/forwarder.js'" }])).toHaveLength(1)
    expect(
      violations([{ rel: 'drivers/nft.ts', text: "import type { Lease } from '../mappings/table.js'\nexport { x } from '../host/listening.js'" }]),
    ).toHaveLength(2)
    expect(violations([{ rel: 'frontends/natpmp/service.ts', text: "const m = await import('../../http/api.js')" }])).toHaveLength(1)
    expect(violations([{ rel: 'gadgets/x.ts', text: '' }])).toEqual(['gadgets/x.ts: folder "gadgets" is in no layer (add it to LAYERS)'])
    expect(violations([{ rel: 'forwarder/x.ts', text: "import { a } from '../core/ip.js'\nimport { b } from './forwarder.js'" }])).toEqual([])
  })
})
