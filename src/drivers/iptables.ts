/** IptablesDriver: one DNAT and one ACCEPT rule per forward in wgpmp's own chains, changed only via `iptables-restore --noflush`. */
import { isIPv4 } from 'node:net'
import { WgpmpError, type ErrorCode } from '../core/errors.js'
import type { Exec } from '../core/exec.js'
import { NATPMP_PORT } from '../protocol/constants.js'
import type { BaseParams, DriverCapabilities, DriverDescription, ForwardDriver } from './driver.js'
import { compareForwards, forwardKey, type Forward, type ForwardChange, type Protocol } from '../core/forward.js'

/*
 * Layout (chain names for the default prefix WGPMP). The same traffic is matched as by
 * nft/wgpmp.nft; only the lookup is a linear rule list instead of a map.
 *
 *   nat    PREROUTING, OUTPUT -I 1 -j WGPMP-PREROUTING
 *          WGPMP-PREROUTING   -d <public>/32 -j WGPMP-DNAT                 one per public address
 *          WGPMP-DNAT         -p tcp -m tcp --dport EXT -j DNAT --to-destination ADDR:PORT   one per forward
 *   filter FORWARD -I 1 -j WGPMP-FORWARD
 *          WGPMP-FORWARD      -m conntrack --ctstate DNAT --ctorigdst <public> -j WGPMP-ACCEPT  one per public address
 *          WGPMP-ACCEPT       -p tcp -m conntrack --ctreplsrc ADDR --ctorigdstport EXT --ctreplsrcport PORT -j ACCEPT
 *          INPUT -I 1 -j WGPMP-INPUT
 *          WGPMP-INPUT        -i <wg> -p udp --dport 5351 -j RETURN            one per WireGuard interface
 *                             -p udp --dport 5351 -j DROP
 *                             the same pair for each BaseParams.wgOnly service (UPnP: udp 1900, tcp 2869)
 *
 * Why a dispatch chain per table instead of `-d <public>` in every forward rule: with several
 * public addresses that would be one DNAT rule per forward *per address*; this way a forward is
 * always exactly one rule in each table, and the public addresses live in one place, like the
 * nft `public_v4` set.
 * Why --ctreplsrc/--ctreplsrcport instead of `-d ADDR --dport PORT`: the reply tuple's source of a
 * DNATed connection is the client's address and port, so the rule names the forward's target
 * and still matches both directions, as nft's `ct original proto-dst` vmap does.
 * Why RETURN rules before one DROP in WGPMP-INPUT: one `! -i wgX -j DROP` per interface would
 * drop wg0's packets at the `! -i wg1` rule as soon as there are two interfaces.
 *
 * Atomicity: iptables-restore commits each `*table ... COMMIT` block on its own (seen with
 * iptables-nft 1.8.9: a failing filter block leaves the nat block applied), so apply() runs nat,
 * then filter, and on a filter failure restores nat with the inverse batch.
 */

export interface IptablesChains {
  readonly prerouting: string
  readonly dnat: string
  readonly forward: string
  readonly accept: string
  readonly input: string
}

export const DEFAULT_CHAIN_PREFIX = 'WGPMP'

/** Chain names for a prefix. Every chain whose name starts with `${prefix}-` is considered ours. */
export const iptablesChains = (prefix: string = DEFAULT_CHAIN_PREFIX): IptablesChains => ({
  prerouting: `${prefix}-PREROUTING`,
  dnat: `${prefix}-DNAT`,
  forward: `${prefix}-FORWARD`,
  accept: `${prefix}-ACCEPT`,
  input: `${prefix}-INPUT`,
})

/** iptables-restore input, one block per table; '' when that table has nothing to do. */
export interface IptablesBatch {
  readonly nat: string
  readonly filter: string
}

/** The net effect of a change list on the current forwards: deletes run before adds. */
export interface IptablesPlan {
  readonly delete: readonly Forward[]
  readonly add: readonly Forward[]
}

/** One table as iptables-save prints it: chain names and rules (`-A CHAIN` stripped) in order. */
export interface SavedTable {
  readonly chains: ReadonlySet<string>
  readonly rules: readonly { readonly chain: string; readonly spec: string }[]
}

// ---------------------------------------------------------------------------------------------
// Validation: everything interpolated into an iptables-restore script is checked first, so no
// value can smuggle a newline or an extra option into the batch.

const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/
const PREFIX = /^[A-Za-z0-9_]{1,17}$/ // + '-PREROUTING' stays within iptables' 28-character chain names

const isPort = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535

/** Throws WGPMP_FORWARD_INVALID unless f is a well-formed IPv4 TCP/UDP forward. */
export function validateForward(f: Forward): void {
  const ok =
    (f.protocol === 'tcp' || f.protocol === 'udp') &&
    isPort(f.externalPort) &&
    isPort(f.internalPort) &&
    typeof f.internalAddress === 'string' &&
    isIPv4(f.internalAddress)
  if (!ok) throw new WgpmpError('WGPMP_FORWARD_INVALID', `iptables: invalid forward ${JSON.stringify(f)}`)
}

/** Throws WGPMP_CONFIG_INVALID unless every public address is IPv4 and every interface name is plain. */
export function validateBaseParams(params: BaseParams): void {
  for (const a of params.publicV4) {
    if (!isIPv4(a)) throw new WgpmpError('WGPMP_CONFIG_INVALID', `iptables: publicV4 ${JSON.stringify(a)} is not an IPv4 address`)
  }
  for (const i of params.wgInterfaces) {
    if (!IFNAME.test(i)) throw new WgpmpError('WGPMP_CONFIG_INVALID', `iptables: interface name ${JSON.stringify(i)} is not valid`)
  }
}

// ---------------------------------------------------------------------------------------------
// Pure planning and batch building.

/**
 * Checks changes in order against current (adds must not collide on (protocol, externalPort),
 * deletes must name an existing key; the delete's target is taken from current) and returns the
 * net effect. Throws WGPMP_FORWARD_EXISTS / WGPMP_FORWARD_MISSING / WGPMP_FORWARD_INVALID; an empty
 * change list gives an empty plan.
 */
export function planChanges(current: readonly Forward[], changes: readonly ForwardChange[]): IptablesPlan {
  const before = new Map(current.map((f) => [forwardKey(f), f]))
  const after = new Map(before)
  for (const c of changes) {
    validateForward(c.forward)
    const k = forwardKey(c.forward)
    if (c.op === 'add') {
      if (after.has(k)) throw new WgpmpError('WGPMP_FORWARD_EXISTS', `iptables: forward ${k} exists`)
      after.set(k, { ...c.forward })
    } else if (!after.delete(k)) {
      throw new WgpmpError('WGPMP_FORWARD_MISSING', `iptables: forward ${k} not found`)
    }
  }
  const same = (a: Forward, b: Forward): boolean => a.internalAddress === b.internalAddress && a.internalPort === b.internalPort
  const del: Forward[] = []
  const add: Forward[] = []
  for (const [k, f] of before) {
    const g = after.get(k)
    if (!g || !same(f, g)) del.push(f)
  }
  for (const [k, g] of after) {
    const f = before.get(k)
    if (!f || !same(f, g)) add.push(g)
  }
  return { delete: del.sort(compareForwards), add: add.sort(compareForwards) }
}

/** The nat rule of a forward, as iptables-save prints it (without `-A CHAIN`). */
export const dnatSpec = (f: Forward): string =>
  `-p ${f.protocol} -m ${f.protocol} --dport ${f.externalPort} -j DNAT --to-destination ${f.internalAddress}:${f.internalPort}`

/** The filter rule of a forward, as iptables-save prints it (without `-A CHAIN`). */
export const acceptSpec = (f: Forward): string =>
  `-p ${f.protocol} -m conntrack --ctreplsrc ${f.internalAddress} --ctorigdstport ${f.externalPort} --ctreplsrcport ${f.internalPort} -j ACCEPT`

const block = (table: string, lines: readonly string[]): string => (lines.length === 0 ? '' : `*${table}\n${lines.join('\n')}\nCOMMIT\n`)

/**
 * iptables-restore --noflush input for a plan: per table, `-D` for every delete, then `-A` for
 * every add. An empty plan gives '' for both tables. Pure; the caller validates (planChanges).
 */
export function buildIptablesBatch(plan: IptablesPlan, opts: { chainPrefix?: string } = {}): IptablesBatch {
  const c = iptablesChains(opts.chainPrefix)
  const lines = (chain: string, spec: (f: Forward) => string): string[] => [
    ...plan.delete.map((f) => `-D ${chain} ${spec(f)}`),
    ...plan.add.map((f) => `-A ${chain} ${spec(f)}`),
  ]
  return { nat: block('nat', lines(c.dnat, dnatSpec)), filter: block('filter', lines(c.accept, acceptSpec)) }
}

/**
 * A batch that empties the forward chains and writes `forwards` again: for many deletes at once,
 * because each `-D rule-spec` is a linear search of its chain (10,000 deletes took 36 s), while a
 * flush and re-add is one pass. Still one transaction per table. Pure.
 */
export function buildIptablesRebuild(forwards: readonly Forward[], opts: { chainPrefix?: string } = {}): IptablesBatch {
  const c = iptablesChains(opts.chainPrefix)
  const lines = (chain: string, spec: (f: Forward) => string): string[] => [`-F ${chain}`, ...forwards.map((f) => `-A ${chain} ${spec(f)}`)]
  return { nat: block('nat', lines(c.dnat, dnatSpec)), filter: block('filter', lines(c.accept, acceptSpec)) }
}

/** More deletes than this in one batch: rebuild the chains instead (buildIptablesRebuild). */
export const REBUILD_AFTER_DELETES = 64

/** The inverse of a plan (what undoes it). */
export const invertPlan = (p: IptablesPlan): IptablesPlan => ({ delete: p.add, add: p.delete })

/**
 * Lines that remove every trace of chains named `${prefix}-*` from one saved table: jumps to
 * them from other chains (deleted by their saved spec), then flush, then (unless kept) delete.
 */
function removalLines(saved: SavedTable, prefix: string, keep: ReadonlySet<string>): string[] {
  const ours = (chain: string): boolean => chain.startsWith(`${prefix}-`)
  const out: string[] = []
  for (const r of saved.rules) {
    if (ours(r.chain)) continue
    const t = ruleTarget(r.spec)
    if (t !== undefined && ours(t)) out.push(`-D ${r.chain} ${r.spec}`)
  }
  const mine = [...saved.chains].filter(ours).sort()
  for (const ch of mine) out.push(`-F ${ch}`)
  for (const ch of mine) if (!keep.has(ch)) out.push(`-X ${ch}`)
  return out
}

/**
 * ensureBase's batch: removes stale hooks and chains of ours (from the saved tables), then
 * creates or empties our chains, fills the static rules and inserts one hook per base chain at
 * position 1. Running it on its own output's result gives the same rules (idempotent). Pure.
 */
export function buildIptablesBase(
  params: BaseParams,
  saved: { readonly nat: SavedTable; readonly filter: SavedTable },
  opts: { chainPrefix?: string } = {},
): IptablesBatch {
  const prefix = opts.chainPrefix ?? DEFAULT_CHAIN_PREFIX
  const c = iptablesChains(prefix)
  const table = (name: string, s: SavedTable, chains: readonly string[], rules: readonly string[]): string => {
    const keep = new Set(chains)
    return block(name, [...removalLines(s, prefix, keep), ...chains.filter((ch) => !s.chains.has(ch)).map((ch) => `-N ${ch}`), ...rules])
  }
  const pmp = `-p udp -m udp --dport ${NATPMP_PORT}`
  return {
    nat: table(
      'nat',
      saved.nat,
      [c.prerouting, c.dnat],
      [...params.publicV4.map((a) => `-A ${c.prerouting} -d ${a}/32 -j ${c.dnat}`), `-I PREROUTING 1 -j ${c.prerouting}`, `-I OUTPUT 1 -j ${c.prerouting}`],
    ),
    filter: table(
      'filter',
      saved.filter,
      [c.forward, c.accept, c.input],
      [
        ...params.publicV4.map((a) => `-A ${c.forward} -m conntrack --ctstate DNAT --ctorigdst ${a} -j ${c.accept}`),
        ...params.wgInterfaces.map((i) => `-A ${c.input} -i ${i} ${pmp} -j RETURN`),
        `-A ${c.input} ${pmp} -j DROP`,
        ...wgOnlyRules(params, c.input), // UPnP
        `-I FORWARD 1 -j ${c.forward}`,
        `-I INPUT 1 -j ${c.input}`,
      ],
    ),
  }
}

/** The input rules for BaseParams.wgOnly (UPnP's 1900 and HTTP port): accepted from the WireGuard interfaces, dropped from anywhere else. */
function wgOnlyRules(params: BaseParams, chain: string): string[] {
  const out: string[] = []
  for (const s of params.wgOnly ?? []) {
    if ((s.protocol !== 'tcp' && s.protocol !== 'udp') || !isPort(s.port)) continue
    const m = `-p ${s.protocol} -m ${s.protocol} --dport ${s.port}`
    out.push(...params.wgInterfaces.map((i) => `-A ${chain} -i ${i} ${m} -j RETURN`), `-A ${chain} ${m} -j DROP`)
  }
  return out
}

/** teardown's batch: removes hooks and all chains named `${prefix}-*`; '' for a table with none. Pure. */
export function buildIptablesTeardown(saved: { readonly nat: SavedTable; readonly filter: SavedTable }, opts: { chainPrefix?: string } = {}): IptablesBatch {
  const prefix = opts.chainPrefix ?? DEFAULT_CHAIN_PREFIX
  return {
    nat: block('nat', removalLines(saved.nat, prefix, new Set())),
    filter: block('filter', removalLines(saved.filter, prefix, new Set())),
  }
}

// ---------------------------------------------------------------------------------------------
// Pure parsing of iptables-save output.

/** Splits a saved rule into words, honouring iptables-save's double quotes (comments). */
export function tokenize(spec: string): string[] {
  const out: string[] = []
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g
  for (let m = re.exec(spec); m; m = re.exec(spec)) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : (m[2] ?? ''))
  return out
}

/** The -j/-g target of a saved rule, if any. */
export function ruleTarget(spec: string): string | undefined {
  const t = tokenize(spec)
  for (let i = 0; i < t.length - 1; i++) if (t[i] === '-j' || t[i] === '-g') return t[i + 1]
  return undefined
}

/** Parses one table from `iptables-save -t <table>`; other tables' blocks are ignored. */
export function parseIptablesSave(text: string, table: string): SavedTable {
  const chains = new Set<string>()
  const rules: { chain: string; spec: string }[] = []
  let inTable = false
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line.startsWith('*')) inTable = line.slice(1) === table
    else if (!inTable || line === '' || line.startsWith('#')) continue
    else if (line === 'COMMIT') inTable = false
    else if (line.startsWith(':')) {
      const name = line.slice(1).split(/\s+/)[0]
      if (name) chains.add(name)
    } else if (line.startsWith('-A ')) {
      const m = /^-A (\S+)\s*(.*)$/.exec(line)
      if (m?.[1] !== undefined) rules.push({ chain: m[1], spec: m[2] ?? '' })
    }
  }
  return { chains, rules }
}

const bad = (spec: string, why: string): WgpmpError =>
  new WgpmpError('WGPMP_KERNEL_UNEXPECTED', `iptables: unexpected rule in wgpmp's DNAT chain (${why}): ${spec}`)

/**
 * One DNAT rule back into a Forward. Throws WGPMP_KERNEL_UNEXPECTED on anything wgpmp would not
 * have written (an extra match changes what the rule does, so it is never silently ignored).
 */
export function parseDnatRule(spec: string): Forward {
  const t = tokenize(spec)
  let protocol: Protocol | undefined
  let ext: number | undefined
  let to: string | undefined
  let target: string | undefined
  for (let i = 0; i < t.length; i += 2) {
    const opt = t[i]
    const val = t[i + 1]
    if (val === undefined) throw bad(spec, `option ${opt ?? ''} without value`)
    switch (opt) {
      case '-p':
        if (val !== 'tcp' && val !== 'udp') throw bad(spec, 'protocol')
        protocol = val
        break
      case '-m':
        if (val !== 'tcp' && val !== 'udp') throw bad(spec, `match ${val}`)
        break
      case '--dport':
        ext = /^\d+$/.test(val) ? Number(val) : undefined
        break
      case '-j':
        target = val
        break
      case '--to-destination':
        to = val
        break
      default:
        throw bad(spec, `option ${opt ?? ''}`)
    }
  }
  const m = to === undefined ? null : /^(\d+\.\d+\.\d+\.\d+):(\d+)$/.exec(to)
  if (target !== 'DNAT' || protocol === undefined || ext === undefined || !m?.[1] || !m[2]) {
    throw bad(spec, 'not a single-port DNAT')
  }
  const f: Forward = { protocol, externalPort: ext, internalAddress: m[1], internalPort: Number(m[2]) }
  try {
    validateForward(f)
  } catch {
    throw bad(spec, 'port or address out of range')
  }
  return f
}

/**
 * The forwards in a saved nat table, sorted; null when our DNAT chain does not exist (no base).
 * Throws WGPMP_KERNEL_UNEXPECTED on a foreign rule or on two rules for one (protocol, port).
 */
export function parseForwards(nat: SavedTable, opts: { chainPrefix?: string } = {}): Forward[] | null {
  const { dnat } = iptablesChains(opts.chainPrefix)
  if (!nat.chains.has(dnat)) return null
  const seen = new Set<string>()
  const out: Forward[] = []
  for (const r of nat.rules) {
    if (r.chain !== dnat) continue
    const f = parseDnatRule(r.spec)
    const k = forwardKey(f)
    if (seen.has(k)) throw bad(r.spec, `second rule for ${k}`)
    seen.add(k)
    out.push(f)
  }
  return out.sort(compareForwards)
}

// ---------------------------------------------------------------------------------------------
// The driver.

export interface IptablesDriverOptions {
  exec: Exec
  /** The iptables binary (default 'iptables'); `${command}-save` and `${command}-restore` are used too. */
  command?: string
  /** Prefix of every chain wgpmp owns (default 'WGPMP'); letters, digits and '_' only, at most 17. */
  chainPrefix?: string
}

const firstLine = (s: string): string =>
  s
    .split('\n')
    .find((l) => l.trim() !== '')
    ?.trim() ?? '(no stderr)'
const refused = (): ErrorCode => 'WGPMP_KERNEL_REFUSED'

/** Maps iptables-restore's stderr to a code: a -D whose rule is gone is a missing forward. */
export function iptablesErrorCode(stderr: string): ErrorCode {
  if (/does a matching rule exist/i.test(stderr)) return 'WGPMP_FORWARD_MISSING'
  return 'WGPMP_KERNEL_REFUSED'
}

/**
 * A large removal is one chain rebuild (O(rules)) whatever its size (REBUILD_AFTER_DELETES), so
 * chunks would multiply that cost: it is removed in chunks this large instead.
 */
export const IPTABLES_BULK_DELETE_CHUNK = 20_000

/** IPv4 only (validateForward); no watch: iptables has no monitor of its own chains. */
export const IPTABLES_CAPABILITIES: DriverCapabilities = { ipv6: false, watch: false, bulkDeleteChunk: IPTABLES_BULK_DELETE_CHUNK, kernel: true }

export class IptablesDriver implements ForwardDriver {
  readonly name = 'iptables' as const
  readonly capabilities = IPTABLES_CAPABILITIES
  readonly #exec: Exec
  readonly #command: string
  readonly #prefix: string
  /**
   * What wgpmp believes it installed (diagnostics only). apply() validates against the kernel,
   * read fresh under the lock, because only the kernel survives restarts and manual edits.
   */
  #state: ReadonlyMap<string, Forward> = new Map()
  /** Serialises every operation: apply reads, plans and writes as one step. */
  #tail: Promise<unknown> = Promise.resolve()

  constructor(opts: IptablesDriverOptions) {
    this.#exec = opts.exec
    this.#command = opts.command ?? 'iptables'
    this.#prefix = opts.chainPrefix ?? DEFAULT_CHAIN_PREFIX
    if (!PREFIX.test(this.#prefix)) {
      throw new WgpmpError('WGPMP_CONFIG_INVALID', `iptables: chainPrefix ${JSON.stringify(this.#prefix)} must be 1-17 of [A-Za-z0-9_]`)
    }
  }

  describe(): DriverDescription {
    return { driver: 'iptables' }
  }

  watchTable(): null {
    return null
  }

  /** Nothing to release: every call is a process that has ended. */
  close(): void {}

  /** Forwards wgpmp installed according to its own bookkeeping (the kernel is the truth; see list()). */
  get tracked(): readonly Forward[] {
    return [...this.#state.values()].sort(compareForwards)
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(fn, fn)
    this.#tail = run.catch(() => undefined)
    return run
  }

  /** Runs a program; a non-zero exit rejects with codeOf(stderr) (iptablesErrorCode for forward batches). */
  async #run(file: string, args: readonly string[], input?: string, codeOf: (stderr: string) => ErrorCode = refused): Promise<string> {
    const r = await this.#exec(file, args, input === undefined ? {} : { input })
    if (r.exitCode !== 0) {
      // iptables-restore names only the line number ("line 3 failed", "Error occurred at line: 3").
      const n = /line:? (\d+)/.exec(r.stderr)?.[1]
      const line = n === undefined ? undefined : input?.split('\n')[Number(n) - 1]
      throw new WgpmpError(codeOf(r.stderr), `${file} ${args.join(' ')}: ${firstLine(r.stderr)}${line === undefined ? '' : ` (${line})`}`, {
        cause: { stderr: r.stderr, exitCode: r.exitCode, ...(line === undefined ? {} : { line }) },
      })
    }
    return r.stdout
  }

  async #save(table: 'nat' | 'filter'): Promise<SavedTable> {
    return parseIptablesSave(await this.#run(`${this.#command}-save`, ['-t', table]), table)
  }

  /** forwards: a batch of forward rules, where a `-D` of a rule that is gone means a missing forward; else any failure is a refusal. */
  async #restore(script: string, forwards = false): Promise<void> {
    if (script !== '') await this.#run(`${this.#command}-restore`, ['-w', '--noflush'], script, forwards ? iptablesErrorCode : refused)
  }

  /**
   * Removes any previous wgpmp chains and hooks (including stale jumps left by a crash, so a
   * restart never duplicates hooks), then installs empty chains for params. Existing forwards
   * are dropped. Not atomic across the two tables: a failure in filter leaves nat's new base;
   * call it again. Rejects WGPMP_CONFIG_INVALID on bad params, WGPMP_KERNEL_REFUSED otherwise.
   */
  ensureBase(params: BaseParams): Promise<void> {
    return this.#serial(async () => {
      validateBaseParams(params)
      const saved = { nat: await this.#save('nat'), filter: await this.#save('filter') }
      const b = buildIptablesBase(params, saved, { chainPrefix: this.#prefix })
      this.#state = new Map()
      await this.#restore(b.nat)
      await this.#restore(b.filter)
    })
  }

  /**
   * Applies all changes or none. Changes are checked in order against the kernel's current
   * forwards (an add of an existing (protocol, port) rejects WGPMP_FORWARD_EXISTS, a delete of a
   * missing one WGPMP_FORWARD_MISSING; a delete matches by key), then the net effect is written:
   * nat, then filter; if filter fails, nat is restored. An empty list does nothing (no process).
   * Rejects WGPMP_FORWARD_MISSING when the base is not installed.
   */
  apply(changes: readonly ForwardChange[]): Promise<void> {
    if (changes.length === 0) return Promise.resolve()
    return this.#serial(async () => {
      const current = parseForwards(await this.#save('nat'), { chainPrefix: this.#prefix })
      if (current === null) throw new WgpmpError('WGPMP_FORWARD_MISSING', 'iptables: base chains not installed (ensureBase first)')
      const plan = planChanges(current, changes)
      const next = new Map(current.map((f) => [forwardKey(f), f]))
      for (const f of plan.delete) next.delete(forwardKey(f))
      for (const f of plan.add) next.set(forwardKey(f), f)
      if (plan.delete.length > 0 || plan.add.length > 0) {
        const opts = { chainPrefix: this.#prefix }
        const rebuild = plan.delete.length > REBUILD_AFTER_DELETES
        const batch = rebuild ? buildIptablesRebuild([...next.values()].sort(compareForwards), opts) : buildIptablesBatch(plan, opts)
        await this.#restore(batch.nat, true)
        try {
          await this.#restore(batch.filter, true)
        } catch (e) {
          try {
            await this.#restore(rebuild ? buildIptablesRebuild(current, opts).nat : buildIptablesBatch(invertPlan(plan), opts).nat, true)
          } catch (e2) {
            throw new WgpmpError('WGPMP_KERNEL_REFUSED', 'iptables: filter batch failed and nat rollback failed; run ensureBase', {
              cause: new AggregateError([e, e2]),
            })
          }
          throw e
        }
      }
      this.#state = next
    })
  }

  /**
   * The forwards in the kernel's DNAT chain, sorted by protocol then port. Resolves [] when
   * wgpmp's chains are not there (before ensureBase, after teardown). Rejects
   * WGPMP_KERNEL_UNEXPECTED if the chain holds a rule wgpmp would not have written.
   */
  list(): Promise<readonly Forward[]> {
    return this.#serial(async () => parseForwards(await this.#save('nat'), { chainPrefix: this.#prefix }) ?? [])
  }

  /** Removes every hook and chain named `${prefix}-*` in nat and filter; resolves if there is none. */
  teardown(): Promise<void> {
    return this.#serial(async () => {
      const saved = { nat: await this.#save('nat'), filter: await this.#save('filter') }
      const b = buildIptablesTeardown(saved, { chainPrefix: this.#prefix })
      await this.#restore(b.filter)
      await this.#restore(b.nat)
      this.#state = new Map()
    })
  }
}
