/**
 * Ending the connections of a deleted forward: conntrack(8) entries of a DNATed flow outlive the
 * map element, so without this a client that released or lost a port keeps receiving traffic on
 * it (checked in the lab: deleting the element alone leaves an established TCP stream flowing).
 * Deleting the entry makes the next packet of the flow miss the DNAT and be reset.
 *
 * One flow matches a forward when its original direction is to PUBLIC:EXT and its reply comes
 * from CLIENT:INT, i.e. exactly the DNAT that forward made, so a new forward on the same external
 * port for another client, installed in between, keeps its flows:
 *   conntrack -D -p tcp --orig-dst PUBLIC --dport EXT --reply-src CLIENT --reply-port-src INT
 * conntrack-tools 1.4.7 exits 0 with "N flow entries have been deleted." on stderr, and exits 1
 * with "0 flow entries have been deleted." when nothing matched, which is not an error here.
 *
 * Big batches (the expiry of 10,000 leases at once): one process per forward would be 10,000
 * processes. Above `maxProcesses` forwards, flushConntrack lists the DNATed flows to PUBLIC once per
 * protocol (`conntrack -L -p P --orig-dst PUBLIC --dst-nat`), keeps the forwards that actually have
 * flows (few: expired leases are usually idle) and deletes only those, at most maxProcesses of
 * them; the rest are reported as skipped (their flows then end by conntrack's own timeouts). So a
 * batch costs at most 2 + maxProcesses processes, whatever its size. conntrack 1.4.7 has no port
 * range filter, and `-D --orig-dst PUBLIC` without a port would also end live forwards' flows.
 */
import type { Exec } from '../core/exec.js'
import type { Forward, Protocol } from '../core/forward.js'

/** Most conntrack processes per flush (and per-forward deletes above the listing path). */
export const DEFAULT_CONNTRACK_MAX_PROCESSES = 32
/** Processes run at the same time. */
export const DEFAULT_CONNTRACK_CONCURRENCY = 4

/** argv (after the program name) that deletes the flows forward's DNAT created. Pure. */
export function conntrackFlushArgs(forward: Forward, publicAddress: string): string[] {
  return [
    '-D',
    '-p',
    forward.protocol,
    '--orig-dst',
    publicAddress,
    '--dport',
    String(forward.externalPort),
    '--reply-src',
    forward.internalAddress,
    '--reply-port-src',
    String(forward.internalPort),
  ]
}

/** argv that lists the DNATed flows of one protocol to publicAddress. Pure. */
export function conntrackListArgs(protocol: Protocol, publicAddress: string): string[] {
  return ['-L', '-p', protocol, '--orig-dst', publicAddress, '--dst-nat']
}

const DELETED = /(\d+) flow entries have been deleted/

/**
 * Interprets one `conntrack -D` run: the number of entries deleted, or an error text. Exit 1 with
 * "0 flow entries have been deleted" is 0 deleted, not an error. Pure.
 */
export function parseDeleteResult(r: { exitCode: number; stderr: string }): { ok: true; deleted: number } | { ok: false; error: string } {
  const m = DELETED.exec(r.stderr)
  if (r.exitCode === 0) return { ok: true, deleted: m ? Number(m[1]) : 0 }
  if (r.exitCode === 1 && m && Number(m[1]) === 0) return { ok: true, deleted: 0 }
  return { ok: false, error: r.stderr.trim().split('\n')[0] || `exit code ${r.exitCode}` }
}

/** One flow of `conntrack -L` output: the original destination port and the reply source. */
export interface ListedFlow {
  readonly protocol: Protocol
  readonly origDport: number
  readonly replySrc: string
  readonly replySport: number
}

/**
 * Parses `conntrack -L` text (default output format) into flows; lines that are not tcp/udp
 * flows with both tuples (e.g. the "N flow entries have been shown" line) are skipped. Pure.
 */
export function parseConntrackList(text: string): ListedFlow[] {
  const out: ListedFlow[] = []
  for (const line of text.split('\n')) {
    const proto = /^(tcp|udp)\s/.exec(line)?.[1]
    if (proto !== 'tcp' && proto !== 'udp') continue
    const src = [...line.matchAll(/\bsrc=(\S+)/g)].map((m) => m[1]!)
    const sport = [...line.matchAll(/\bsport=(\d+)/g)].map((m) => Number(m[1]))
    const dport = [...line.matchAll(/\bdport=(\d+)/g)].map((m) => Number(m[1]))
    if (src.length < 2 || sport.length < 2 || dport.length < 1) continue
    out.push({ protocol: proto, origDport: dport[0]!, replySrc: src[1]!, replySport: sport[1]! })
  }
  return out
}

const flowKey = (p: Protocol, ext: number, addr: string, port: number): string => `${p}/${ext}/${addr}/${port}`

export interface FlushOptions {
  /** argv that runs conntrack (default ['conntrack']; tests: ['ip','netns','exec',NS,'conntrack']). */
  conntrackArgv?: readonly string[]
  /** See the module doc. Default 32. */
  maxProcesses?: number
  /** Default 4. */
  concurrency?: number
  /**
   * More forwards than this: list the DNATed flows first (one `conntrack -L` per protocol) and
   * delete only for forwards that have some. Each `conntrack -D` dumps the whole conntrack table,
   * so on a busy server listing once is cheaper than one -D per forward. Default: maxProcesses.
   */
  listAbove?: number
}

export interface FlushResult {
  /** Flow entries deleted in total. */
  readonly deleted: number
  /** conntrack processes run. */
  readonly processes: number
  /** Forwards whose flows were not looked at (big batch beyond maxProcesses, or conntrack missing). */
  readonly skipped: readonly Forward[]
  /** Failures other than "nothing matched" (binary missing, no permission, bad argument...). */
  readonly errors: readonly { readonly forward?: Forward; readonly error: string }[]
}

/**
 * Ends the flows of deleted forwards. Never rejects: every failure is in the result (the forward
 * is already gone from the kernel; the caller logs and counts). An empty list runs nothing. If
 * conntrack cannot be started (not installed), the remaining forwards are skipped at once.
 */
export async function flushConntrack(exec: Exec, forwards: readonly Forward[], publicAddress: string, opts: FlushOptions = {}): Promise<FlushResult> {
  const [file = 'conntrack', ...pre] = opts.conntrackArgv ?? ['conntrack']
  const maxProcesses = Math.max(1, opts.maxProcesses ?? DEFAULT_CONNTRACK_MAX_PROCESSES)
  const concurrency = Math.max(1, opts.concurrency ?? DEFAULT_CONNTRACK_CONCURRENCY)
  let deleted = 0
  let processes = 0
  let missing = false
  const skipped: Forward[] = []
  const errors: { forward?: Forward; error: string }[] = []

  const run = async (args: readonly string[]): Promise<{ exitCode: number; stdout: string; stderr: string } | null> => {
    if (missing) return null
    processes++
    try {
      return await exec(file, [...pre, ...args])
    } catch (e) {
      missing = true // cannot start conntrack: no point trying the others
      errors.push({ error: (e as Error).message })
      return null
    }
  }

  let todo: readonly Forward[] = forwards
  if (forwards.length > (opts.listAbove ?? maxProcesses)) {
    const withFlows = new Set<string>()
    const unlisted = new Set<Protocol>()
    for (const protocol of ['tcp', 'udp'] as const) {
      if (!forwards.some((f) => f.protocol === protocol)) continue
      const r = await run(conntrackListArgs(protocol, publicAddress))
      if (r === null || r.exitCode !== 0) {
        unlisted.add(protocol)
        if (r) errors.push({ error: `conntrack -L -p ${protocol}: ${r.stderr.trim().split('\n')[0] ?? ''}` })
        continue
      }
      for (const f of parseConntrackList(r.stdout)) withFlows.add(flowKey(f.protocol, f.origDport, f.replySrc, f.replySport))
    }
    skipped.push(...forwards.filter((f) => unlisted.has(f.protocol)))
    const active = forwards.filter((f) => withFlows.has(flowKey(f.protocol, f.externalPort, f.internalAddress, f.internalPort)))
    todo = active.slice(0, maxProcesses)
    skipped.push(...active.slice(maxProcesses))
  }

  let next = 0
  const worker = async (): Promise<void> => {
    // Bounded: each iteration takes one forward from a finite list.
    while (next < todo.length) {
      const forward = todo[next++]!
      const r = await run(conntrackFlushArgs(forward, publicAddress))
      if (r === null) {
        skipped.push(forward)
        continue
      }
      const p = parseDeleteResult(r)
      if (p.ok) deleted += p.deleted
      else errors.push({ forward, error: p.error })
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, todo.length) }, worker))
  return { deleted, processes, skipped, errors }
}
