/**
 * Helpers for the end-to-end suites (peers.test.ts, robustness.test.ts): raw NAT-PMP/PCP over UDP
 * from inside a lab namespace, the HTTP API through undici from inside the server namespace (the
 * API listens on the namespace's loopback), the forwards map, the lab's own NAT table, VmRSS.
 */
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import type { Lab, LabNs } from './lab.js'
import { listen } from './traffic.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** mulberry32: a small seeded PRNG, so a failing run (fuzz, kill storm) can be replayed from its printed seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** `nft list map inet wgpmp forwards_v4` in the server namespace ('' if the table is missing). */
export async function nftForwards(lab: Lab): Promise<string> {
  return (await lab.exec('srv', 'nft', ['list', 'map', 'inet', 'wgpmp', 'forwards_v4'], { reject: false })).stdout
}

/** Whether the forwards map holds `proto . port : …` (any target). */
export const hasForward = (map: string, proto: 'tcp' | 'udp', port: number): boolean => new RegExp(`\\b${proto} \\. ${port} :`).test(map)

/**
 * The lab's masquerade table, exactly as scripts/lab.sh creates it: `nft flush ruleset` removes it
 * together with the daemon's table, and the clients' outbound traffic needs it.
 */
export const LABNAT_RULESET = `table ip labnat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "eth0" ip saddr 10.8.0.0/24 masquerade
	}
}
`
export async function restoreLabnat(lab: Lab): Promise<void> {
  await lab.exec('srv', 'nft', ['-f', '-'], { input: LABNAT_RULESET })
}

/**
 * A TCP listener (killed by lab.down()) that reads the request line, then answers "NAME PEER-ADDRESS"
 * and closes. Unlike traffic.ts's listen(), it never closes with the client's line still unread:
 * that makes the kernel send a RST, which can discard the answer before the client reads it (talk()
 * then returns '' although the forward worked; seen about 1 time in 10 in the lab).
 */
export const serveTcp = (lab: Lab, ns: LabNs, bind: string, port: number, name: string): Promise<void> => listen(lab, ns, 'tcp', bind, port, name)

/** VmRSS of a process in KiB (from /proc/PID/status), or null if it is gone. */
export async function vmRssKb(pid: number): Promise<number | null> {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : null
  } catch {
    return null
  }
}

/** Whether a pid is alive (and not a zombie). */
export async function alive(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return false
  }
}

// ------------------------------------------------------------------------------ packets --

/** NAT-PMP request bytes (RFC 6886): opcode 0 (public address) or a map request. */
export function natpmpPublicAddress(): Buffer {
  return Buffer.from([0, 0])
}
export function natpmpMap(proto: 'tcp' | 'udp', internalPort: number, suggestedPort: number, lifetime: number): Buffer {
  const b = Buffer.alloc(12)
  b[0] = 0
  b[1] = proto === 'udp' ? 1 : 2
  b.writeUInt16BE(internalPort, 4)
  b.writeUInt16BE(suggestedPort, 6)
  b.writeUInt32BE(lifetime >>> 0, 8)
  return b
}

/** A decoded NAT-PMP reply (RFC 6886 §3.2, §3.3): the fields a test asserts on. */
export interface NatPmpReply {
  len: number
  version: number
  op: number
  result: number
  publicV4?: string
  internalPort?: number
  externalPort?: number
  lifetime?: number
}
export function decodeNatPmpReply(hex: string): NatPmpReply {
  const b = Buffer.from(hex, 'hex')
  const r: NatPmpReply = { len: b.length, version: b[0] ?? -1, op: b[1] ?? -1, result: b.length >= 4 ? b.readUInt16BE(2) : -1 }
  if (b.length === 12) r.publicV4 = [...b.subarray(8, 12)].join('.')
  if (b.length === 16) {
    r.internalPort = b.readUInt16BE(8)
    r.externalPort = b.readUInt16BE(10)
    r.lifetime = b.readUInt32BE(12)
  }
  return r
}

// ------------------------------------------------------------------------------ UDP sender --

/**
 * Runs in a lab namespace (node, ESM). Packets arrive as hex lines on stdin. PROBE (JSON):
 * bind, bindPort, dst, port, mode ('request': send packet 0 every gapMs until a reply, at most tries
 * times; 'stream': send them all, `batch` at a time with gapMs between batches, then wait waitMs),
 * keep (replies kept). Prints one JSON line: sent, errors, count (replies), replies (hex), ms.
 */
const UDP_SCRIPT = `
import dgram from 'node:dgram'
const o = JSON.parse(process.env.PROBE)
let input = ''
process.stdin.setEncoding('utf8')
for await (const c of process.stdin) input += c
const pkts = input.split('\\n').filter((l) => l !== '').map((h) => Buffer.from(h === '-' ? '' : h, 'hex'))
const sock = dgram.createSocket('udp4')
await new Promise((res, rej) => { sock.once('error', rej); sock.bind({ address: o.bind, port: o.bindPort }, res) })
sock.on('error', () => {})
const replies = []
let count = 0
sock.on('message', (m) => { count++; if (replies.length < o.keep) replies.push(m.toString('hex')) })
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
let sent = 0, errors = 0
const t0 = Date.now()
const cb = (e) => { if (e) errors++ }
if (o.mode === 'request') {
  for (let i = 0; i < o.tries && count === 0; i++) {
    sock.send(pkts[0], o.port, o.dst, cb); sent++
    for (let j = 0; j < o.gapMs / 10 && count === 0; j++) await sleep(10)
  }
} else {
  for (let i = 0; i < pkts.length; i += o.batch) {
    for (const p of pkts.slice(i, i + o.batch)) { sock.send(p, o.port, o.dst, cb); sent++ }
    await sleep(o.gapMs)
  }
  await sleep(o.waitMs)
}
console.log(JSON.stringify({ sent, errors, count, replies, ms: Date.now() - t0 }))
sock.close()
`

export interface UdpResult {
  sent: number
  errors: number
  count: number
  replies: string[]
  ms: number
}

export interface UdpOptions {
  /** Local address to send from (must exist in that namespace). */
  bind: string
  /** Local port to send from (default: any). */
  bindPort?: number
  dst: string
  port?: number
  mode: 'request' | 'stream'
  /** request: attempts (default 8); gapMs: between attempts or batches (default 250 / 10). */
  tries?: number
  gapMs?: number
  batch?: number
  waitMs?: number
  keep?: number
  /** Bound on the whole run (default 30 s). */
  timeoutMs?: number
}

/** Sends UDP datagrams from namespace `ns` (see UDP_SCRIPT) and returns what came back. */
export async function udpSend(lab: Lab, ns: LabNs, packets: readonly Uint8Array[], o: UdpOptions): Promise<UdpResult> {
  const probe = {
    bind: o.bind,
    bindPort: o.bindPort ?? 0,
    dst: o.dst,
    port: o.port ?? 5351,
    mode: o.mode,
    tries: o.tries ?? 8,
    gapMs: o.gapMs ?? (o.mode === 'request' ? 250 : 10),
    batch: o.batch ?? 100,
    waitMs: o.waitMs ?? 500,
    keep: o.keep ?? 20,
  }
  const input = packets.map((p) => (p.length === 0 ? '-' : Buffer.from(p).toString('hex'))).join('\n') + '\n'
  const r = await lab.exec(ns, 'node', ['--input-type=module', '-e', UDP_SCRIPT], {
    input,
    env: { PROBE: JSON.stringify(probe) },
    reject: false,
    timeout: o.timeoutMs ?? 30_000,
  })
  if (r.exitCode !== 0) throw new Error(`udp sender in ${ns} failed (${r.exitCode}): ${r.stderr}`)
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as UdpResult
}

/** One NAT-PMP request from `bind` in namespace `ns` to the server's tunnel address; the reply, or null. */
export async function natpmpRequest(lab: Lab, ns: LabNs, bind: string, packet: Uint8Array): Promise<NatPmpReply | null> {
  const r = await udpSend(lab, ns, [packet], { bind, dst: lab.ips.wgSrv, mode: 'request', tries: 8, gapMs: 250 })
  return r.replies[0] === undefined ? null : decodeNatPmpReply(r.replies[0])
}

// ------------------------------------------------------------------------------ HTTP API --

/** Runs in the server namespace with the repository as cwd (so `undici` resolves). */
const API_SCRIPT = `
import { request } from 'undici'
const o = JSON.parse(process.env.API_REQ)
const r = await request(o.url, { method: o.method, headers: o.headers, body: o.body, headersTimeout: 5000, bodyTimeout: 5000 })
const text = await r.body.text()
console.log(JSON.stringify({ status: r.statusCode, headers: r.headers, text }))
`

export interface ApiResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
  /** The body parsed as JSON, or undefined if it is not JSON. */
  json: unknown
}

export interface ApiClient {
  call(method: string, path: string, opts?: { token?: string | null; body?: unknown; rawBody?: string; contentType?: string }): Promise<ApiResponse>
}

/**
 * An HTTP client for the daemon's API at 127.0.0.1:`port` of the server namespace, through undici
 * in a node process inside that namespace. `token` is the default bearer token (null: no header).
 */
export function apiClient(lab: Lab, port: number, token: string): ApiClient {
  return {
    async call(method, path, opts = {}) {
      const headers: Record<string, string> = {}
      const t = opts.token === undefined ? token : opts.token
      if (t !== null) headers.authorization = `Bearer ${t}`
      let body: string | undefined
      if (opts.rawBody !== undefined) body = opts.rawBody
      else if (opts.body !== undefined) body = JSON.stringify(opts.body)
      if (body !== undefined) headers['content-type'] = opts.contentType ?? 'application/json'
      const req = { url: `http://127.0.0.1:${port}${path}`, method, headers, body }
      const r = await lab.exec('srv', 'node', ['--input-type=module', '-e', API_SCRIPT], {
        cwd: ROOT,
        env: { API_REQ: JSON.stringify(req) },
        reject: false,
        timeout: 15_000,
      })
      if (r.exitCode !== 0) throw new Error(`API ${method} ${path} failed in the server namespace (${r.exitCode}): ${r.stderr}`)
      const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as Omit<ApiResponse, 'json'>
      let json: unknown
      try {
        json = JSON.parse(out.text)
      } catch {
        json = undefined
      }
      return { ...out, json }
    },
  }
}

/** A prometheus sample value from text exposition format, summed over lines matching name and labels. */
export function metricSum(text: string, name: string, labelMatch = ''): number {
  let sum = 0
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.startsWith(name)) continue
    const rest = line.slice(name.length)
    if (rest[0] !== '{' && rest[0] !== ' ') continue
    if (labelMatch && !rest.includes(labelMatch)) continue
    sum += Number(line.split(' ').pop())
  }
  return sum
}
