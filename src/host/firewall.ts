/**
 * Host firewall detection: does another table's FORWARD path drop the traffic of our forwards?
 *
 * A forward's packets cross every base chain on the forward hook. An accept ends only the chain it
 * is in; a drop anywhere is final. So ufw's or Docker's `FORWARD` policy DROP drops a forward that
 * wgpmp's own table accepts, and the client's connection silently times out. This module models
 * the other tables' forward base chains (nftables, iptables-nft, iptables-legacy), walks them for
 * the two packets of a forwarded connection (the first one, public interface -> WireGuard, ct state
 * new; the reply, WireGuard -> public interface, ct state established; both ct status dnat), and
 * reports a chain that certainly drops one of them with the exact rule that fixes it. It warns only
 * when sure: a rule it cannot read (an iptables match it does not know) makes the verdict unknown.
 *
 * Opt-in `host_firewall_accept: true` inserts that accept at the top of each dropping chain (with a
 * comment, so exactly that rule is found and removed on exit and after a crash).
 */
import { Gauge, type Registry } from 'prom-client'
import type { Exec } from '../core/exec.js'
import type { Logger } from '../log.js'
import { repeat, type Cancel, type Clock } from '../core/clock.js'

/** The comment on the accept rule host_firewall_accept inserts. */
export const ACCEPT_COMMENT = 'wgpmp-host-firewall-accept'
export const DEFAULT_FIREWALL_CHECK_MS = 30_000
const MAX_DEPTH = 16

// --- model ------------------------------------------------------------------------------------

export type Verdict = { readonly kind: 'accept' | 'drop' | 'return' | 'continue' } | { readonly kind: 'jump' | 'goto'; readonly target: string }

export type MatchKey = 'iif' | 'oif' | 'ctstate' | 'ctstatus' | 'l4proto'
/**
 * One condition of a rule. `specific`: narrows the rule to some ports or addresses, which an
 * arbitrary forward may or may not have (a drop or accept of port 22 says nothing about forwards in
 * general). `opaque`: a condition this module cannot read.
 */
export type Match =
  { readonly key: MatchKey; readonly negate: boolean; readonly values: readonly string[] } | { readonly key: 'specific' | 'opaque'; readonly what: string }

export interface Rule {
  readonly matches: readonly Match[]
  readonly verdict: Verdict
  /** How to name it in a message: the nft handle or the iptables -S line. */
  readonly text: string
  readonly handle?: number | undefined
  readonly comment?: string | undefined
}

export interface Chain {
  readonly name: string
  /** Base chains: their hook and policy. */
  readonly hook?: string | undefined
  readonly policy?: 'accept' | 'drop' | undefined
  readonly rules: readonly Rule[]
}

export type Backend = 'nft' | 'iptables' | 'iptables-legacy'

export interface FwTable {
  readonly family: string
  readonly name: string
  readonly backend: Backend
  readonly chains: ReadonlyMap<string, Chain>
}

export interface Block {
  readonly backend: Backend
  readonly family: string
  readonly table: string
  readonly chain: string
  /** Which packet of a forwarded connection is dropped. */
  readonly packet: 'inbound' | 'reply'
  /** 'policy drop' or the dropping rule. */
  readonly by: string
  /** The command that makes the chain accept forwarded traffic. */
  readonly fix: string
}

// --- nftables JSON ----------------------------------------------------------------------------

type Json = Record<string, unknown>
const obj = (v: unknown): Json | null => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : null)
const strs = (v: unknown): string[] | null => {
  if (typeof v === 'string') return [v]
  if (typeof v === 'number') return [String(v)]
  const set = obj(v)?.set ?? v
  if (Array.isArray(set) && set.every((x) => typeof x === 'string' || typeof x === 'number')) return set.map(String)
  return null
}

function nftMatch(m: Json): Match {
  const left = obj(m.left)
  const op = typeof m.op === 'string' ? m.op : '=='
  const negate = op === '!='
  const values = strs(m.right)
  const what = JSON.stringify(m)
  // A named set (@name) or a map: its content is elsewhere.
  if (values?.some((v) => v.startsWith('@'))) return { key: 'opaque', what }
  if (!left || values === null || (op !== '==' && op !== '!=' && op !== 'in')) return { key: left?.payload || left?.ct ? 'specific' : 'opaque', what }
  const meta = obj(left.meta)?.key
  if (meta === 'iifname') return { key: 'iif', negate, values }
  if (meta === 'oifname') return { key: 'oif', negate, values }
  if (meta === 'l4proto') return { key: 'l4proto', negate, values }
  const ct = obj(left.ct)
  if (ct?.key === 'state' && ct.dir === undefined) return { key: 'ctstate', negate, values: values.map((v) => v.toUpperCase()) }
  if (ct?.key === 'status' && ct.dir === undefined) return { key: 'ctstatus', negate, values: values.map((v) => v.toUpperCase()) }
  if (left.payload || left.ct || meta === 'iif' || meta === 'oif' || meta === 'nfproto' || meta === 'mark') return { key: 'specific', what }
  return { key: 'opaque', what }
}

function nftRule(r: Json): Rule {
  const matches: Match[] = []
  let verdict: Verdict = { kind: 'continue' }
  const exprs = Array.isArray(r.expr) ? r.expr : []
  for (const e of exprs) {
    const x = obj(e)
    if (!x) continue
    if (x.match) matches.push(nftMatch(obj(x.match) ?? {}))
    else if ('accept' in x) verdict = { kind: 'accept' }
    else if ('drop' in x || 'reject' in x) verdict = { kind: 'drop' }
    else if ('return' in x) verdict = { kind: 'return' }
    else if (x.jump || x.goto) {
      const target = obj(x.jump ?? x.goto)?.target
      if (typeof target === 'string') verdict = { kind: x.jump ? 'jump' : 'goto', target }
    } else if (x.xt) {
      const xt = obj(x.xt)
      if (xt?.type === 'match') matches.push({ key: 'opaque', what: `xt match ${String(xt.name)}` })
      else if (xt?.type === 'target') verdict = { kind: 'continue' }
    } else if (x.counter || x.log || x.limit || x.mangle || x.notrack || x.meter || x.quota) {
      // non-terminal statements: no condition, no verdict (limit/quota are conditions in truth: opaque)
      if (x.limit || x.quota || x.meter) matches.push({ key: 'opaque', what: Object.keys(x)[0]! })
    } else if (x.vmap || x.dnat || x.snat || x.masquerade || x.redirect || x.queue) {
      // a verdict map or NAT: its outcome depends on the packet
      matches.push({ key: 'opaque', what: Object.keys(x)[0]! })
      verdict = { kind: x.vmap ? 'accept' : 'continue' }
    }
  }
  const handle = typeof r.handle === 'number' ? r.handle : undefined
  return { matches, verdict, text: `handle ${handle ?? '?'}`, handle, comment: typeof r.comment === 'string' ? r.comment : undefined }
}

/**
 * The tables of `nft -j list ruleset` (or of several `nft -j list table` outputs concatenated as
 * separate documents in `texts`), except `skip` (our own). Unparsable text: no tables.
 */
export function parseNftRuleset(
  texts: string | readonly string[],
  skip: { family: string; name: string } | null = { family: 'inet', name: 'wgpmp' },
): FwTable[] {
  const tables = new Map<
    string,
    { family: string; name: string; chains: Map<string, { name: string; hook?: string | undefined; policy?: 'accept' | 'drop' | undefined; rules: Rule[] }> }
  >()
  for (const text of typeof texts === 'string' ? [texts] : texts) {
    let doc: unknown
    try {
      doc = JSON.parse(text)
    } catch {
      continue
    }
    const items = obj(doc)?.nftables
    if (!Array.isArray(items)) continue
    for (const it of items) {
      const o = obj(it)
      const t = obj(o?.table)
      const c = obj(o?.chain)
      const r = obj(o?.rule)
      const rec = t ?? c ?? r
      if (!rec || typeof rec.family !== 'string') continue
      const tableName = t ? rec.name : rec.table
      if (typeof tableName !== 'string') continue
      if (skip && rec.family === skip.family && tableName === skip.name) continue
      const key = `${rec.family} ${tableName}`
      let table = tables.get(key)
      if (!table) tables.set(key, (table = { family: rec.family, name: tableName, chains: new Map() }))
      if (c && typeof c.name === 'string') {
        const prev = table.chains.get(c.name)
        table.chains.set(c.name, {
          name: c.name,
          hook: typeof c.hook === 'string' ? c.hook : undefined,
          policy: c.policy === 'drop' ? 'drop' : c.hook ? 'accept' : undefined,
          rules: prev?.rules ?? [],
        })
      } else if (r && typeof r.chain === 'string') {
        let chain = table.chains.get(r.chain)
        if (!chain) table.chains.set(r.chain, (chain = { name: r.chain, rules: [] }))
        chain.rules.push(nftRule(r))
      }
    }
  }
  return [...tables.values()].map((t) => ({ family: t.family, name: t.name, backend: 'nft' as const, chains: t.chains }))
}

/** An iptables-nft table (a Warning comment names it in nft's text output; the JSON does not): ip/ip6 filter. */
export const isIptablesNftTable = (t: Pick<FwTable, 'family' | 'name' | 'chains'>): boolean =>
  (t.family === 'ip' || t.family === 'ip6') && t.name === 'filter' && t.chains.get('FORWARD')?.hook === 'forward'

// --- iptables -S ------------------------------------------------------------------------------

/** Splits an iptables -S line into words, honouring the double quotes iptables puts around comments. */
function words(line: string): string[] {
  const out: string[] = []
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g
  for (let m = re.exec(line); m; m = re.exec(line)) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!)
  return out
}

const TERMINAL: Record<string, Verdict['kind']> = { ACCEPT: 'accept', DROP: 'drop', REJECT: 'drop', RETURN: 'return' }
/** Options that narrow a rule to some packets (ports, addresses, ...), with the number of values each takes. */
const SPECIFIC_OPTS = new Set([
  '-s',
  '--source',
  '-d',
  '--destination',
  '--dport',
  '--sport',
  '--dports',
  '--sports',
  '--destination-port',
  '--source-port',
  '--icmp-type',
  '--icmpv6-type',
  '--tcp-flags',
  '--syn',
  '--ctorigdst',
  '--ctorigsrc',
  '--ctrepldst',
  '--ctreplsrc',
  '--ctorigdstport',
  '--ctproto',
  '--uid-owner',
  '--dst-type',
  '--src-type',
])
const NO_ARG = new Set(['--syn'])
const HARMLESS_MODULES = new Set(['comment', 'tcp', 'udp', 'icmp', 'icmp6', 'icmpv6', 'multiport', 'conntrack', 'state', 'iprange', 'addrtype'])

/** Parses `iptables -S` / `ip6tables -S` (the filter table) into one table. Lines it cannot read make an opaque rule. */
export function parseIptablesS(text: string, family: 'ip' | 'ip6', backend: 'iptables' | 'iptables-legacy'): FwTable {
  const chains = new Map<string, { name: string; hook?: string | undefined; policy?: 'accept' | 'drop' | undefined; rules: Rule[] }>()
  const chain = (name: string): { name: string; hook?: string | undefined; policy?: 'accept' | 'drop' | undefined; rules: Rule[] } => {
    let c = chains.get(name)
    if (!c) chains.set(name, (c = { name, rules: [] }))
    return c
  }
  const BUILTIN_HOOK: Record<string, string> = { INPUT: 'input', FORWARD: 'forward', OUTPUT: 'output' }
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    const w = words(line)
    if (w[0] === '-P' && w[1] && w[2]) {
      const c = chain(w[1])
      c.hook = BUILTIN_HOOK[w[1]]
      c.policy = w[2] === 'DROP' ? 'drop' : 'accept'
    } else if (w[0] === '-N' && w[1]) {
      chain(w[1])
    } else if (w[0] === '-A' && w[1]) {
      const matches: Match[] = []
      let verdict: Verdict = { kind: 'continue' }
      let comment: string | undefined
      let negate = false
      for (let i = 2; i < w.length; i++) {
        const a = w[i]!
        if (a === '!') {
          negate = true
          continue
        }
        const v = w[i + 1]
        if ((a === '-i' || a === '--in-interface' || a === '-o' || a === '--out-interface') && v !== undefined) {
          matches.push({ key: a.startsWith('-i') || a === '--in-interface' ? 'iif' : 'oif', negate, values: [v] })
          i++
        } else if ((a === '-p' || a === '--protocol') && v !== undefined) {
          matches.push({ key: 'l4proto', negate, values: [v] })
          i++
        } else if ((a === '--ctstate' || a === '--state') && v !== undefined) {
          matches.push({ key: 'ctstate', negate, values: v.toUpperCase().split(',') })
          i++
        } else if (a === '--ctstatus' && v !== undefined) {
          matches.push({ key: 'ctstatus', negate, values: v.toUpperCase().split(',') })
          i++
        } else if (a === '--comment' && v !== undefined) {
          comment = v
          i++
        } else if (a === '-m' && v !== undefined) {
          if (!HARMLESS_MODULES.has(v)) matches.push({ key: 'opaque', what: `-m ${v}` })
          i++
        } else if ((a === '-j' || a === '-g' || a === '--jump' || a === '--goto') && v !== undefined) {
          const t = TERMINAL[v]
          verdict = t ? ({ kind: t } as Verdict) : { kind: a === '-g' || a === '--goto' ? 'goto' : 'jump', target: v }
          // The options of a target (--reject-with, --log-prefix ...) follow; they are not matches.
          break
        } else if (SPECIFIC_OPTS.has(a)) {
          matches.push({ key: 'specific', what: a })
          if (!NO_ARG.has(a)) i++
        } else if (a.startsWith('-')) {
          matches.push({ key: 'opaque', what: a })
          if (v !== undefined && !v.startsWith('-')) i++
        }
        negate = false
      }
      chain(w[1]).rules.push({ matches, verdict, text: line, comment })
    }
  }
  // A -j to something that is not a chain (LOG, MARK, ...) is a non-terminal target.
  for (const c of chains.values()) {
    c.rules = c.rules.map((r) => (r.verdict.kind === 'jump' && !chains.has(r.verdict.target) ? { ...r, verdict: { kind: 'continue' } } : r))
  }
  return { family, name: 'filter', backend, chains }
}

// --- evaluation -------------------------------------------------------------------------------

interface Packet {
  readonly iif: string
  readonly oif: string
  readonly ctstate: string
  /** Checked for tcp and for udp: a verdict must hold for both. */
  readonly l4proto: string
}

type Truth = 'yes' | 'no' | 'maybe-specific' | 'maybe-opaque'

const ifaceMatches = (pattern: string, name: string): boolean =>
  pattern.endsWith('+') || pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : pattern === name

function truth(m: Match, p: Packet): Truth {
  if (m.key === 'specific') return 'maybe-specific'
  if (m.key === 'opaque') return 'maybe-opaque'
  let hit: boolean
  switch (m.key) {
    case 'iif':
      hit = m.values.some((v) => ifaceMatches(v, p.iif))
      break
    case 'oif':
      hit = m.values.some((v) => ifaceMatches(v, p.oif))
      break
    case 'l4proto':
      hit = m.values.some((v) => v === p.l4proto || v === 'all' || v === '0')
      break
    case 'ctstate':
      // iptables' virtual states DNAT/SNAT live beside the real ones.
      hit = m.values.some((v) => v === p.ctstate || v === 'DNAT')
      break
    case 'ctstatus': {
      if (m.values.every((v) => v === 'DNAT')) hit = true
      else return 'maybe-opaque'
      break
    }
  }
  return hit !== m.negate ? 'yes' : 'no'
}

/** yes: every condition holds; no: one fails; maybe-*: unknown, the worst kind of unknown. */
function ruleApplies(r: Rule, p: Packet): Truth {
  let out: Truth = 'yes'
  for (const m of r.matches) {
    const t = truth(m, p)
    if (t === 'no') return 'no'
    if (t === 'maybe-opaque') out = 'maybe-opaque'
    else if (t === 'maybe-specific' && out === 'yes') out = 'maybe-specific'
  }
  return out
}

type Outcome = { readonly kind: 'accept' } | { readonly kind: 'drop'; readonly by: string } | { readonly kind: 'unknown' } | { readonly kind: 'fallthrough' }

/**
 * Walks one chain for a packet. accept/drop: certain; unknown: a rule that may apply (and is not
 * merely port- or address-specific) could change the outcome; fallthrough: the chain ends (or returns).
 */
function walk(t: FwTable, chainName: string, p: Packet, depth: number): Outcome {
  const c = t.chains.get(chainName)
  if (!c || depth > MAX_DEPTH) return { kind: 'unknown' }
  let uncertain = false
  for (const r of c.rules) {
    const a = ruleApplies(r, p)
    if (a === 'no') continue
    const v = r.verdict
    // A port- or address-specific rule (its jumps too): an arbitrary forward is not covered by its
    // accept and not certainly hit by its drop, so it changes nothing about forwards in general.
    if (a === 'maybe-specific') continue
    if (a === 'maybe-opaque') {
      if (v.kind !== 'continue') uncertain = true
      continue
    }
    if (v.kind === 'continue') continue
    if (v.kind === 'accept') return uncertain ? { kind: 'unknown' } : { kind: 'accept' }
    if (v.kind === 'drop') return uncertain ? { kind: 'unknown' } : { kind: 'drop', by: `${t.backend === 'nft' ? `chain ${c.name} ` : ''}${r.text}` }
    if (v.kind === 'return') return uncertain ? { kind: 'unknown' } : { kind: 'fallthrough' }
    if (!('target' in v)) continue
    const sub = walk(t, v.target, p, depth + 1)
    if (sub.kind === 'unknown') return sub
    if (sub.kind !== 'fallthrough') return uncertain ? { kind: 'unknown' } : sub
    if (v.kind === 'goto') return uncertain ? { kind: 'unknown' } : { kind: 'fallthrough' }
  }
  return uncertain ? { kind: 'unknown' } : { kind: 'fallthrough' }
}

/** The command that inserts the accept at the top of a chain (what host_firewall_accept runs). */
export function fixCommand(t: Pick<FwTable, 'family' | 'name' | 'backend'>, chain: string): string {
  if (t.backend !== 'nft') return `${t.family === 'ip6' ? 'ip6tables' : 'iptables'} -I ${chain} -m conntrack --ctstate DNAT -j ACCEPT`
  return `nft insert rule ${t.family} ${t.name} ${chain} ct status dnat accept`
}

/**
 * The forward base chains of `tables` that certainly drop one of the two packets of a forward
 * from publicInterface to wgInterface (each chain once: the inbound packet is reported first).
 */
export function findForwardBlocks(tables: readonly FwTable[], o: { wgInterface: string; publicInterface: string }): Block[] {
  const blocks: Block[] = []
  const packets: [Block['packet'], Omit<Packet, 'l4proto'>][] = [
    ['inbound', { iif: o.publicInterface, oif: o.wgInterface, ctstate: 'NEW' }],
    ['reply', { iif: o.wgInterface, oif: o.publicInterface, ctstate: 'ESTABLISHED' }],
  ]
  for (const t of tables) {
    if (t.family !== 'inet' && t.family !== 'ip' && t.family !== 'ip6') continue
    for (const c of t.chains.values()) {
      if (c.hook !== 'forward') continue
      for (const [which, base] of packets) {
        const outcomes = ['tcp', 'udp'].map((l4proto) => {
          const w = walk(t, c.name, { ...base, l4proto }, 0)
          return w.kind === 'fallthrough' ? (c.policy === 'drop' ? { kind: 'drop' as const, by: 'policy drop' } : { kind: 'accept' as const }) : w
        })
        const drop = outcomes.find((x): x is { kind: 'drop'; by: string } => x.kind === 'drop')
        if (drop) {
          blocks.push({ backend: t.backend, family: t.family, table: t.name, chain: c.name, packet: which, by: drop.by, fix: fixCommand(t, c.name) })
          break
        }
      }
    }
  }
  return blocks
}

// --- the daemon's side ------------------------------------------------------------------------

export interface FirewallStatus {
  /** A forward base chain of another table certainly drops forwarded traffic. */
  readonly blocksForwards: boolean
  readonly blocks: readonly Block[]
  /** Accept rules host_firewall_accept inserted (removed on exit). */
  readonly inserted: readonly string[]
  /** When the check could not run (nft missing, no permission). */
  readonly error: string | null
}

interface Inserted {
  readonly block: Block
  /** nft: the rule's handle. */
  readonly handle?: number
}

/** Reads the host's forward path, warns once per distinct finding, optionally inserts the accept. */
export class HostFirewall {
  private status: FirewallStatus = { blocksForwards: false, blocks: [], inserted: [], error: null }
  private lastWarned = ''
  private timer: Cancel | null = null
  private running: Promise<void> | null = null
  private readonly inserted: Inserted[] = []
  private stopped = false
  private legacy: boolean | null = null

  constructor(
    private readonly o: {
      exec: Exec
      log: Logger
      clock: Clock
      wgInterface: string
      publicInterface: string
      accept: boolean
      intervalMs?: number
    },
  ) {}

  get current(): FirewallStatus {
    return this.status
  }

  /** Registers wgpmp_host_firewall_blocks_forwards (0/1) in a registry. */
  registerMetric(registry: Registry): void {
    const status = (): FirewallStatus => this.status
    new Gauge({
      name: 'wgpmp_host_firewall_blocks_forwards',
      help: '1 when a forward base chain of another table (ufw, Docker, nftables) drops forwarded traffic; see the log for the rule to add',
      registers: [registry],
      collect() {
        this.set(status().blocksForwards ? 1 : 0)
      },
    })
  }

  /** Reads the tables now (and inserts the accept when asked). Never rejects. */
  check(): Promise<void> {
    this.running ??= this.run().finally(() => {
      this.running = null
    })
    return this.running
  }

  start(): void {
    this.timer = repeat(this.o.clock, this.o.intervalMs ?? DEFAULT_FIREWALL_CHECK_MS, () => this.check())
  }

  /** Stops the checks and removes the accept rules it inserted. Never rejects. */
  async close(): Promise<void> {
    this.stopped = true
    this.timer?.()
    this.timer = null
    await this.running
    for (const ins of this.inserted.splice(0)) await this.remove(ins.block, ins.handle)
  }

  private async readTables(): Promise<FwTable[]> {
    const { exec } = this.o
    const list = await exec('nft', ['-j', 'list', 'tables'])
    if (list.exitCode !== 0) throw new Error(`nft list tables: ${list.stderr.trim() || `exit ${list.exitCode}`}`)
    const names = parseNftRuleset(list.stdout).map((t) => [t.family, t.name] as const)
    // Table by table, never our own: listing inet wgpmp would load every forward.
    const texts: string[] = []
    for (const [family, name] of names) {
      const r = await exec('nft', ['-j', 'list', 'table', family, name])
      if (r.exitCode === 0) texts.push(r.stdout)
    }
    const out: FwTable[] = []
    for (const t of parseNftRuleset(texts)) {
      // iptables-nft's matches are opaque in nft's JSON (xt): read the same table through iptables -S.
      const s = isIptablesNftTable(t) ? await this.iptablesS(t.family === 'ip6' ? 'ip6tables' : 'iptables') : null
      out.push(s === null ? t : parseIptablesS(s, t.family as 'ip' | 'ip6', 'iptables'))
    }
    // iptables-legacy keeps its rules outside nftables: read them when that backend has a FORWARD chain.
    if (this.legacy === null) {
      const v = await exec('iptables-legacy', ['-V']).catch(() => null)
      this.legacy = v !== null && v.exitCode === 0
    }
    if (this.legacy) {
      for (const [cmd, fam] of [
        ['iptables-legacy', 'ip'],
        ['ip6tables-legacy', 'ip6'],
      ] as const) {
        const s = await this.iptablesS(cmd)
        if (s !== null && /^-A |^-P FORWARD DROP/m.test(s)) out.push(parseIptablesS(s, fam, 'iptables-legacy'))
      }
    }
    return out
  }

  private async iptablesS(cmd: string): Promise<string | null> {
    const r = await this.o.exec(cmd, ['-w', '5', '-S']).catch(() => null)
    return r && r.exitCode === 0 ? r.stdout : null
  }

  private async run(): Promise<void> {
    let blocks: Block[]
    try {
      blocks = findForwardBlocks(await this.readTables(), this.o)
    } catch (err) {
      const error = (err as Error).message
      if (this.status.error !== error) this.o.log.warn({ err }, 'host firewall: cannot read the forward path')
      this.status = { ...this.status, error }
      return
    }
    if (this.o.accept && !this.stopped) {
      for (const b of blocks) {
        if (this.inserted.some((i) => sameChain(i.block, b))) continue
        await this.removeStale(b)
        const ins = await this.insert(b)
        if (ins) this.inserted.push(ins)
      }
      if (blocks.length > 0) {
        try {
          blocks = findForwardBlocks(await this.readTables(), this.o)
        } catch {
          // keep the first reading
        }
      }
    }
    const key = JSON.stringify(blocks)
    if (blocks.length > 0 && key !== this.lastWarned) {
      // One warning for everything found: which chains drop what, and the exact rules to add.
      this.o.log.warn(
        {
          chains: blocks.map((b) => ({ backend: b.backend, chain: `${b.family} ${b.table} ${b.chain}`, packet: b.packet, by: b.by })),
          fix: [...new Set(blocks.map((b) => b.fix))],
        },
        'host firewall drops forwarded traffic: add the accept rule (or set host_firewall_accept: true)',
      )
    } else if (blocks.length === 0 && this.lastWarned !== '' && this.lastWarned !== '[]') {
      this.o.log.info('host firewall no longer drops forwarded traffic')
    }
    this.lastWarned = key
    this.status = { blocksForwards: blocks.length > 0, blocks, inserted: this.inserted.map((i) => i.block.fix), error: null }
  }

  private async insert(b: Block): Promise<Inserted | null> {
    const { exec, log } = this.o
    if (b.backend === 'nft') {
      const r = await exec('nft', [
        '-e',
        '-a',
        'insert',
        'rule',
        b.family,
        b.table,
        b.chain,
        'ct',
        'status',
        'dnat',
        'accept',
        'comment',
        `"${ACCEPT_COMMENT}"`,
      ])
      const handle = Number(/# handle (\d+)/.exec(r.stdout)?.[1])
      if (r.exitCode !== 0 || !Number.isInteger(handle)) {
        log.error({ chain: `${b.family} ${b.table} ${b.chain}`, stderr: r.stderr.trim() }, 'host firewall: cannot insert the accept rule')
        return null
      }
      log.warn({ chain: `${b.family} ${b.table} ${b.chain}`, handle }, 'host firewall: accept rule for forwarded traffic inserted (host_firewall_accept)')
      return { block: b, handle }
    }
    const cmd = iptablesCmd(b)
    const r = await exec(cmd, ['-w', '5', '-I', b.chain, ...ACCEPT_SPEC])
    if (r.exitCode !== 0) {
      log.error({ chain: b.chain, cmd, stderr: r.stderr.trim() }, 'host firewall: cannot insert the accept rule')
      return null
    }
    log.warn({ chain: b.chain, cmd }, 'host firewall: accept rule for forwarded traffic inserted (host_firewall_accept)')
    return { block: b }
  }

  private async remove(b: Block, handle: number | undefined): Promise<void> {
    const { exec, log } = this.o
    const r =
      b.backend === 'nft'
        ? await exec('nft', ['delete', 'rule', b.family, b.table, b.chain, 'handle', String(handle)]).catch(() => null)
        : await exec(iptablesCmd(b), ['-w', '5', '-D', b.chain, ...ACCEPT_SPEC]).catch(() => null)
    if (r?.exitCode === 0) log.info({ chain: `${b.family} ${b.table} ${b.chain}` }, 'host firewall: accept rule removed')
    else log.warn({ chain: `${b.family} ${b.table} ${b.chain}`, stderr: r?.stderr.trim() }, 'host firewall: cannot remove the accept rule')
  }

  /** Accept rules of an earlier run (a crash skipped its exit): removed before inserting anew. */
  private async removeStale(b: Block): Promise<void> {
    if (b.backend === 'nft') {
      const r = await this.o.exec('nft', ['-j', 'list', 'chain', b.family, b.table, b.chain]).catch(() => null)
      if (!r || r.exitCode !== 0) return
      const chain = parseNftRuleset(r.stdout, null)[0]?.chains.get(b.chain)
      for (const rule of chain?.rules ?? []) if (rule.comment === ACCEPT_COMMENT && rule.handle !== undefined) await this.remove(b, rule.handle)
      return
    }
    for (let i = 0; i < 8; i++) {
      const r = await this.o.exec(iptablesCmd(b), ['-w', '5', '-D', b.chain, ...ACCEPT_SPEC]).catch(() => null)
      if (!r || r.exitCode !== 0) return
    }
  }
}

const ACCEPT_SPEC = ['-m', 'conntrack', '--ctstate', 'DNAT', '-m', 'comment', '--comment', ACCEPT_COMMENT, '-j', 'ACCEPT']
const iptablesCmd = (b: Block): string => `${b.family === 'ip6' ? 'ip6tables' : 'iptables'}${b.backend === 'iptables-legacy' ? '-legacy' : ''}`
const sameChain = (a: Block, b: Block): boolean => a.backend === b.backend && a.family === b.family && a.table === b.table && a.chain === b.chain
