/**
 * Bench agent in the load namespace: a NAT-PMP load generator. The namespace routes 10.8.128.0/17
 * to `lo` (`ip route add local`), so a socket can be bound to any of 32,768 client addresses;
 * every packet goes out on the veth whose peer is the daemon's WireGuard-like interface.
 * One UDP socket per client address; several requests may be outstanding on one socket as long
 * as their (opcode, internal port) differ, which is how replies are matched. Every loop here is
 * bounded by a count and a deadline. Also listens on TCP 18080 (all addresses) so the harness can
 * check that a forward carries a real connection to the right client.
 */
import { createSocket, type Socket } from 'node:dgram'
import { request } from 'node:http'
import { createServer } from 'node:net'
import { Opcode } from '../../src/protocol/constants.js'
import { decodeResponse, encodeRequest } from '../../src/protocol/natpmp.js'
import { clientAddress } from '../lib/clients.js'
import { nowMs, serve } from '../lib/rpc.js'
import { summarize } from '../lib/stats.js'

type Proto = 'tcp' | 'udp'

export interface Reply {
  ok: boolean
  result: number
  t0: number
  t1: number
  rtt: number
  externalPort: number
  lifetime: number
}

const TIMEOUT: Reply = { ok: false, result: -1, t0: 0, t1: 0, rtt: NaN, externalPort: 0, lifetime: 0 }

let server = { address: '10.8.0.1', port: 5351 }
const counters = { retransmits: 0 }

class Client {
  private readonly pending = new Map<string, { resolve: (r: Reply) => void; t0: number; timer: NodeJS.Timeout }>()
  private constructor(
    readonly address: string,
    private readonly sock: Socket,
  ) {
    sock.on('message', (msg, rinfo) => {
      const t1 = nowMs()
      if (rinfo.port !== server.port || rinfo.address !== server.address) return
      const d = decodeResponse(new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength))
      if (!d) return
      const key = d.op === Opcode.PublicAddress ? '0' : `${d.op}:${d.internalPort ?? 0}`
      const p = this.pending.get(key)
      if (!p) return
      this.pending.delete(key)
      clearTimeout(p.timer)
      p.resolve({ ok: d.result === 0, result: d.result, t0: p.t0, t1, rtt: t1 - p.t0, externalPort: d.externalPort ?? 0, lifetime: d.lifetimeSeconds ?? 0 })
    })
  }

  static async open(address: string): Promise<Client> {
    const sock = createSocket('udp4')
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject)
      sock.bind(0, address, () => {
        sock.off('error', reject)
        resolve()
      })
    })
    sock.on('error', () => {})
    return new Client(address, sock)
  }

  busy(key: string): boolean {
    return this.pending.has(key)
  }

  /**
   * Sends and waits for the reply, retransmitting like an RFC 6886 §3.1 client (250 ms, doubling)
   * until timeoutMs; latency counts from the first send, as the client sees it.
   */
  request(bytes: Uint8Array, key: string, timeoutMs: number, retransmit = true): Promise<Reply> {
    if (this.pending.has(key)) return Promise.reject(new Error(`${this.address}: ${key} already outstanding`))
    return new Promise<Reply>((resolve) => {
      const t0 = nowMs()
      let wait = 250
      const retry = (): void => {
        if (nowMs() - t0 >= timeoutMs) {
          this.pending.delete(key)
          resolve({ ...TIMEOUT, t0 })
          return
        }
        if (!retransmit) {
          this.pending.delete(key)
          resolve({ ...TIMEOUT, t0 })
          return
        }
        counters.retransmits++
        this.sock.send(bytes, server.port, server.address)
        wait *= 2
        entry.timer = setTimeout(retry, Math.min(wait, Math.max(1, timeoutMs - (nowMs() - t0))))
      }
      const entry = { resolve, t0, timer: setTimeout(retry, retransmit ? Math.min(wait, timeoutMs) : timeoutMs) }
      this.pending.set(key, entry)
      this.sock.send(bytes, server.port, server.address)
    })
  }

  map(protocol: Proto, internalPort: number, lifetime: number, suggested = 0, timeoutMs = 5000, retransmit = true): Promise<Reply> {
    const op = protocol === 'udp' ? Opcode.MapUdp : Opcode.MapTcp
    return this.request(
      encodeRequest({ op, internalPort, suggestedExternalPort: suggested, lifetimeSeconds: lifetime }),
      `${op}:${internalPort}`,
      timeoutMs,
      retransmit,
    )
  }

  publicAddress(timeoutMs = 5000, retransmit = true): Promise<Reply> {
    return this.request(encodeRequest({ op: Opcode.PublicAddress }), '0', timeoutMs, retransmit)
  }

  close(): void {
    this.sock.close()
  }
}

const clients = new Map<number, Client>()
async function client(i: number): Promise<Client> {
  let c = clients.get(i)
  if (!c) {
    c = await Client.open(clientAddress(i))
    clients.set(i, c)
  }
  return c
}

/** Runs task(0..n-1) with `concurrency` workers until done or the deadline; returns how many ran. */
async function pool(n: number, concurrency: number, deadline: number, task: (i: number, worker: number) => Promise<void>): Promise<number> {
  let next = 0
  const worker = async (w: number): Promise<void> => {
    while (next < n && nowMs() < deadline) await task(next++, w)
  }
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, (_, w) => worker(w)))
  return next
}

/** The k-th forward of a prefill: client, protocol and internal port (tcp and udp share the external port). */
const fillSlot = (k: number, clientBase: number, perClient: number): { client: number; protocol: Proto; internalPort: number } => {
  const j = k % perClient
  return { client: clientBase + Math.floor(k / perClient), protocol: j % 2 === 0 ? 'tcp' : 'udp', internalPort: 10000 + (j >> 1) }
}

/** Forwards [from, to) of the fill plan, asked with a window of outstanding requests. */
interface FillRange {
  from: number
  to: number
  clientBase: number
  perClient: number
  window: number
  lifetime: number
  timeoutMs: number
  budgetMs: number
  /** One protocol for the whole range (internal ports 10000 + k % perClient) instead of the plan's alternation. */
  protocol?: Proto
}

/** Asks for the k-th forward of a fill range (a prefill and its renewal ask the same keys). */
async function mapSlot(p: FillRange, k: number): ReturnType<Client['map']> {
  const s = fillSlot(k, p.clientBase, p.perClient)
  const c = await client(s.client)
  return c.map(p.protocol ?? s.protocol, p.protocol ? 10000 + (k % p.perClient) : s.internalPort, p.lifetime, 0, p.timeoutMs)
}

// A stream of probes sent at a fixed interval whatever the replies do (open loop, so a stalled
// daemon shows up as long waits instead of fewer samples).
interface Stream {
  timer: NodeJS.Timeout
  done: Promise<void>[]
  samples: { kind: 'public' | 'map'; t0: number; rtt: number; ok: boolean }[]
  sent: number
}
let stream: Stream | null = null

const accepted: { t: number; local: string; localPort: number; remote: string }[] = []
const tcp = createServer((s) => {
  accepted.push({ t: nowMs(), local: s.localAddress ?? '', localPort: s.localPort ?? 0, remote: s.remoteAddress ?? '' })
  if (accepted.length > 10_000) accepted.shift()
  s.end()
})
tcp.on('error', (e) => process.stderr.write(`loadgen tcp: ${e.message}\n`))
tcp.listen(18080, '0.0.0.0')

serve(
  {
    init(p: { address: string; port: number }) {
      server = { address: p.address, port: p.port }
      return null
    },
    /** One request from one client; the reply with its send/receive times (monotonic ms). */
    async one(p: {
      client: number
      kind: 'map' | 'public'
      protocol?: Proto
      internalPort?: number
      lifetime?: number
      suggested?: number
      timeoutMs?: number
    }) {
      const c = await client(p.client)
      // One request at a time: no retransmission, so a late reply can never be taken for the next one.
      return p.kind === 'public'
        ? c.publicAddress(p.timeoutMs, false)
        : c.map(p.protocol ?? 'tcp', p.internalPort ?? 0, p.lifetime ?? 3600, p.suggested ?? 0, p.timeoutMs, false)
    },
    /**
     * One UPnP AddPortMapping or DeletePortMapping (libtorrent's request shape) from one client's
     * address to the daemon's control URL; result is the UPnP error code (0: success).
     */
    upnpOne(p: {
      client: number
      action: 'add' | 'delete'
      externalPort: number
      internalPort: number
      protocol?: Proto
      httpPort?: number
      timeoutMs?: number
    }) {
      const me = clientAddress(p.client)
      const proto = (p.protocol ?? 'tcp').toUpperCase()
      const st = 'urn:schemas-upnp-org:service:WANIPConnection:1'
      const action = p.action === 'add' ? 'AddPortMapping' : 'DeletePortMapping'
      const args =
        p.action === 'add'
          ? `<NewRemoteHost></NewRemoteHost><NewExternalPort>${p.externalPort}</NewExternalPort><NewProtocol>${proto}</NewProtocol><NewInternalPort>${p.internalPort}</NewInternalPort><NewInternalClient>${me}</NewInternalClient><NewEnabled>1</NewEnabled><NewPortMappingDescription>bench</NewPortMappingDescription><NewLeaseDuration>3600</NewLeaseDuration>`
          : `<NewRemoteHost></NewRemoteHost><NewExternalPort>${p.externalPort}</NewExternalPort><NewProtocol>${proto}</NewProtocol>`
      const body = `<?xml version="1.0"?>\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:${action} xmlns:u="${st}">${args}</u:${action}></s:Body></s:Envelope>`
      return new Promise<Reply>((resolve) => {
        const t0 = nowMs()
        const req = request(
          {
            host: server.address,
            port: p.httpPort ?? 2869,
            path: '/ctl/IPConn',
            method: 'POST',
            localAddress: me,
            timeout: p.timeoutMs ?? 30_000,
            agent: false,
            headers: {
              'Content-Type': 'text/xml; charset="utf-8"',
              SOAPAction: `"${st}#${action}"`,
              'Content-Length': Buffer.byteLength(body),
              Connection: 'close',
            },
          },
          (res) => {
            let text = ''
            res.setEncoding('utf8')
            res.on('data', (c: string) => (text += c))
            res.on('end', () => {
              const t1 = nowMs()
              const code = res.statusCode === 200 ? 0 : Number(/<errorCode>(\d+)</.exec(text)?.[1] ?? -1)
              resolve({ ok: code === 0, result: code, t0, t1, rtt: t1 - t0, externalPort: p.externalPort, lifetime: 3600 })
            })
          },
        )
        req.on('timeout', () => req.destroy())
        req.on('error', () => resolve(TIMEOUT))
        req.end(body)
      })
    },
    /** Creates forwards [from, to) of the fill plan with a window of outstanding requests. */
    async prefill(p: FillRange) {
      const t0 = nowMs()
      const deadline = t0 + p.budgetMs
      let ok = 0
      let failed = 0
      const results: Record<string, number> = {}
      const ran = await pool(p.to - p.from, p.window, deadline, async (i) => {
        const r = await mapSlot(p, p.from + i)
        if (r.ok) ok++
        else {
          failed++
          results[String(r.result)] = (results[String(r.result)] ?? 0) + 1
        }
      })
      const ms = nowMs() - t0
      return { requested: ran, ok, failed, results, ms, rate: ok / (ms / 1000), complete: ran === p.to - p.from }
    },
    /** Renews forwards [from, to) of the fill plan (same keys) with a new lifetime. */
    async renewRange(p: FillRange) {
      const t0 = nowMs()
      let ok = 0
      let first = Infinity
      let last = 0
      const ran = await pool(p.to - p.from, p.window, t0 + p.budgetMs, async (i) => {
        const r = await mapSlot(p, p.from + i)
        if (r.ok) {
          ok++
          first = Math.min(first, r.t1)
          last = Math.max(last, r.t1)
        }
      })
      return { requested: ran, ok, ms: nowMs() - t0, firstReply: first, lastReply: last }
    },
    /**
     * `concurrency` requesters (one client address each) create new TCP forwards back to back
     * for durationMs or until maxCount; new forwards per second and their latency.
     */
    async throughput(p: { concurrency: number; durationMs: number; maxCount: number; clientBase: number; timeoutMs: number }) {
      const t0 = nowMs()
      const rtts: number[] = []
      let failed = 0
      const perWorker = new Array<number>(p.concurrency).fill(0)
      const ran = await pool(p.maxCount, p.concurrency, t0 + p.durationMs, async (_i, w) => {
        const c = await client(p.clientBase + w)
        const r = await c.map('tcp', 20000 + perWorker[w]!++, 7200, 0, p.timeoutMs)
        if (r.ok) rtts.push(r.rtt)
        else failed++
      })
      const ms = nowMs() - t0
      return { requested: ran, ok: rtts.length, failed, ms, rate: rtts.length / (ms / 1000), latency: summarize(rtts) }
    },
    /**
     * Deletes side by side with the mappings they remove (issue 10 §5): `concurrency` requesters
     * (one client address each) first create up to perWorker new TCP forwards each, back to back
     * (internal ports internalBase up), then each deletes (lifetime 0) exactly the ones it created,
     * back to back. Each half is bounded by durationMs; rates and latency of both.
     */
    async mapThenDelete(p: { concurrency: number; perWorker: number; clientBase: number; internalBase: number; durationMs: number; timeoutMs: number }) {
      const created: number[][] = Array.from({ length: p.concurrency }, () => [])
      // Sockets opened before the clock starts: the rates are the daemon's, not the bind()s'.
      await Promise.all(Array.from({ length: p.concurrency }, (_, w) => client(p.clientBase + w)))
      const half = async (kind: 'map' | 'delete') => {
        const t0 = nowMs()
        const deadline = t0 + p.durationMs
        const rtts: number[] = []
        let failed = 0
        await Promise.all(
          Array.from({ length: p.concurrency }, async (_, w) => {
            const c = await client(p.clientBase + w)
            const todo = kind === 'map' ? Array.from({ length: p.perWorker }, (_, k) => p.internalBase + k) : [...created[w]!]
            for (let k = 0; k < todo.length && nowMs() < deadline; k++) {
              const r = await c.map('tcp', todo[k]!, kind === 'map' ? 7200 : 0, 0, p.timeoutMs)
              if (r.ok) {
                rtts.push(r.rtt)
                if (kind === 'map') created[w]!.push(todo[k]!)
              } else failed++
            }
          }),
        )
        const ms = nowMs() - t0
        return { ok: rtts.length, failed, ms, rate: rtts.length / (ms / 1000), latency: summarize(rtts) }
      }
      const maps = await half('map')
      const deletes = await half('delete')
      return { maps, deletes }
    },
    /** NAT-PMP delete-all (internal port 0, lifetime 0) for each client and protocol, all at once. */
    async deleteAll(p: { clients: number[]; protocols: Proto[]; timeoutMs: number }) {
      const rs = await Promise.all(p.clients.flatMap((i) => p.protocols.map(async (proto) => (await client(i)).map(proto, 0, 0, 0, p.timeoutMs))))
      const t0 = Math.min(...rs.map((r) => r.t0))
      return {
        ok: rs.filter((r) => r.ok).length,
        failed: rs.filter((r) => !r.ok).length,
        t0,
        t1: Math.max(...rs.map((r) => r.t1)),
        maxRtt: Math.max(...rs.map((r) => r.rtt)),
      }
    },
    /**
     * Starts the probe stream: every intervalMs, alternately a public-address request (from one
     * of 64 sockets) and a MAP request for a new TCP forward (client `client`, internal ports
     * 40000 up). Bounded by maxProbes.
     */
    async streamStart(p: { client: number; publicBase: number; intervalMs: number; maxProbes: number; timeoutMs: number }) {
      if (stream) throw new Error('stream already running')
      const mapClient = await client(p.client)
      const pubs = await Promise.all(Array.from({ length: 64 }, (_, i) => client(p.publicBase + i)))
      const s: Stream = { timer: setInterval(() => {}, 1000), done: [], samples: [], sent: 0 }
      clearInterval(s.timer)
      let port = 40000
      s.timer = setInterval(() => {
        if (s.sent >= p.maxProbes) return
        const n = s.sent++
        if (n % 2 === 0) {
          const c = pubs.find((x) => !x.busy('0'))
          if (!c) {
            s.samples.push({ kind: 'public', t0: nowMs(), rtt: Infinity, ok: false })
            return
          }
          s.done.push(c.publicAddress(p.timeoutMs, false).then((r) => void s.samples.push({ kind: 'public', t0: r.t0, rtt: r.rtt, ok: r.ok })))
        } else {
          s.done.push(
            mapClient.map('tcp', port++, 3600, 0, p.timeoutMs, false).then((r) => void s.samples.push({ kind: 'map', t0: r.t0, rtt: r.rtt, ok: r.ok })),
          )
        }
      }, p.intervalMs)
      stream = s
      return null
    },
    /** Stops the stream, waits for its replies; latency of probes sent in [from, to] (all if absent). */
    async streamStop(p: { from?: number; to?: number }) {
      const s = stream
      if (!s) throw new Error('no stream')
      clearInterval(s.timer)
      stream = null
      await Promise.all(s.done)
      const inWin = s.samples.filter((x) => x.t0 >= (p.from ?? -Infinity) && x.t0 <= (p.to ?? Infinity))
      const lost = inWin.filter((x) => !x.ok).length
      const lat = (k: 'public' | 'map'): ReturnType<typeof summarize> => summarize(inWin.filter((x) => x.kind === k && x.ok).map((x) => x.rtt))
      return {
        sent: s.sent,
        inWindow: inWin.length,
        failed: lost,
        public: lat('public'),
        map: lat('map'),
        all: summarize(inWin.filter((x) => x.ok).map((x) => x.rtt)),
      }
    },
    /** TCP connections accepted on 18080 since t (monotonic ms). */
    acceptedSince(p: { t: number }) {
      return accepted.filter((a) => a.t >= p.t)
    },
    /** Retransmissions since the last call (a request lost by the daemon's socket buffer shows up here). */
    retransmits() {
      const n = counters.retransmits
      counters.retransmits = 0
      return n
    },
    closeClients() {
      for (const c of clients.values()) c.close()
      clients.clear()
      return null
    },
  },
  () => {
    tcp.close()
    for (const c of clients.values()) c.close()
  },
)
