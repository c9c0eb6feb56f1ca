/**
 * Issue 10 §2/§7 helpers: a storm of NAT-PMP mappings from a lab client (several concurrent
 * senders, each internal port asked once), the acknowledgements it received, and the kernel's
 * forwards map parsed, so a test can check that every acknowledged mapping is forwarded.
 */
import type { ConfigInput } from '../../src/config/schema.js'
import type { Lab } from './lab.js'
import { nftForwards } from './e2e-tools.js'
import { labConfig } from './wgpmp-proc.js'

/** The daemon's config for a storm: quiet logs, and no per-client quota or rate limit in the way. */
export const stormConfig = (lab: Lab): ConfigInput =>
  labConfig(lab, { log_level: 'info', max_forwards_per_client: 30_000, rate_limit_per_second: 100_000, rate_limit_burst: 100_000 })

/**
 * Runs in a client namespace. Each sender binds the client's tunnel address, sends one map
 * request (TCP and UDP alternately, lifetime 3600) and waits up to WAIT ms for its answer, then the
 * next internal port. Every success reply is printed as "ack PROTO INTERNAL EXTERNAL" the moment it
 * arrives. Bounded: PER ports per sender and MAX_MS in all.
 */
const STORM_SCRIPT = `
import dgram from 'node:dgram'
const o = JSON.parse(process.env.STORM)
const deadline = Date.now() + o.maxMs
let finished = 0
const run = async (g) => {
  const s = dgram.createSocket('udp4')
  s.on('error', () => {})
  await new Promise((r) => s.bind(0, o.bind, r))
  let pending = null
  s.on('message', (m) => {
    if (m.length < 16 || m[0] !== 0) return
    const op = m[1] - 128, result = m.readUInt16BE(2), internal = m.readUInt16BE(8), external = m.readUInt16BE(10)
    if (result === 0 && external !== 0) process.stdout.write('ack ' + (op === 1 ? 'udp' : 'tcp') + ' ' + internal + ' ' + external + '\\n')
    if (pending && pending.internal === internal) pending.done()
  })
  for (let i = 0; i < o.per && Date.now() < deadline; i++) {
    const internal = o.base + g * o.per + i
    const b = Buffer.alloc(12)
    b[1] = i % 2 === 0 ? 2 : 1
    b.writeUInt16BE(internal, 4)
    b.writeUInt32BE(3600, 8)
    await new Promise((res) => {
      const t = setTimeout(res, o.waitMs)
      pending = { internal, done: () => { clearTimeout(t); res() } }
      s.send(b, 5351, o.dst)
    })
    if (o.gapMs > 0) await new Promise((r) => setTimeout(r, o.gapMs))
  }
  s.close()
  if (++finished === o.senders) process.exit(0)
}
for (let g = 0; g < o.senders; g++) void run(g)
`

export interface Storm {
  /** "PROTO INTERNAL" -> external port, for every success reply received so far. */
  readonly acks: Map<string, number>
  readonly client: string
  stop(): void
}

export function startStorm(
  lab: Lab,
  ns: 'c1' | 'c2',
  o: { senders?: number; per?: number; base?: number; maxMs?: number; waitMs?: number; gapMs?: number } = {},
): Storm {
  const client = ns === 'c1' ? lab.ips.c1 : lab.ips.c2
  const cfg = {
    bind: client,
    dst: lab.ips.wgSrv,
    senders: o.senders ?? 4,
    per: o.per ?? 2000,
    base: o.base ?? 20000,
    maxMs: o.maxMs ?? 60_000,
    waitMs: o.waitMs ?? 200,
    gapMs: o.gapMs ?? 1,
  }
  const child = lab.spawn(ns, 'node', ['--input-type=module', '-e', STORM_SCRIPT], { env: { STORM: JSON.stringify(cfg) }, reject: false, buffer: false })
  const acks = new Map<string, number>()
  let rest = ''
  child.stdout?.setEncoding('utf8')
  child.stdout?.on('data', (c: string) => {
    rest += c
    const lines = rest.split('\n')
    rest = lines.pop() ?? ''
    for (const l of lines) {
      const m = /^ack (tcp|udp) (\d+) (\d+)$/.exec(l)
      if (m) acks.set(`${m[1]} ${m[2]}`, Number(m[3]))
    }
  })
  return { acks, client, stop: () => void (child.exitCode === null && child.pid !== undefined && child.kill('SIGKILL')) }
}

/** The kernel's IPv4 forwards: "PROTO EXTERNAL" -> "ADDRESS:PORT". */
export async function kernelForwards(lab: Lab): Promise<Map<string, string>> {
  const text = await nftForwards(lab)
  const out = new Map<string, string>()
  for (const m of text.matchAll(/\b(tcp|udp) \. (\d+) : ([0-9.]+) \. (\d+)/g)) out.set(`${m[1]} ${m[2]}`, `${m[3]}:${m[4]}`)
  return out
}

/** The acknowledged mappings of the storms that the kernel does not forward as promised. */
export function lostMappings(storms: readonly { acks: ReadonlyMap<string, number>; client: string }[], kernel: ReadonlyMap<string, string>): string[] {
  const lost: string[] = []
  for (const s of storms) {
    for (const [k, ext] of s.acks) {
      const [proto, internal] = k.split(' ')
      if (kernel.get(`${proto} ${ext}`) !== `${s.client}:${internal}`)
        lost.push(`${s.client} ${proto}/${internal}->${ext} (kernel: ${kernel.get(`${proto} ${ext}`) ?? 'none'})`)
    }
  }
  return lost
}
