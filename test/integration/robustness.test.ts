/**
 * Issue 5, end to end: restarts, tampering, floods and hostile clients. Real namespaces, real
 * WireGuard (wireguard-go), the built daemon (dist/) in the server namespace, natpmpc in the
 * clients, socat and node sockets for traffic.
 *
 *  - the WireGuard listen port, a port the host listens on and the API port are never granted;
 *  - hairpin: a second client (and the client itself, and the server) reach a forward through the
 *    public address;
 *  - an established TCP connection through a forward is cut when the forward is deleted;
 *  - kill -9 then restart with traffic flowing: the forward keeps working (same port), a lease
 *    that expired during the downtime is gone from the kernel;
 *  - `nft flush ruleset`: the forward works again within a few seconds;
 *  - a 20k-packet flood from c2 while c1 maps a port with natpmpc: c1 is served, the daemon lives;
 *  - a seeded fuzz of 7,000 random and mutated NAT-PMP/PCP packets from c1: the daemon still
 *    answers correctly, is alive, and its memory stayed bounded.
 */
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ConfigInput } from '../../src/config/schema.js'
import {
  alive,
  apiClient,
  hasForward,
  metricSum,
  natpmpMap,
  natpmpPublicAddress,
  nftForwards,
  prng,
  restoreLabnat,
  serveTcp,
  sleep,
  udpSend,
  vmRssKb,
  type ApiClient,
} from './e2e-tools.js'
import { isRoot, startLab, waitFor, type Lab } from './lab.js'
import { listen, talk } from './traffic.js'
import { labConfig, natpmpc, startWgpmp, type Wgpmp } from './wgpmp-proc.js'

const API_PORT = 18182
const TOKEN = 'robustness-e2e-token-0123456789'
/** c1's echo service (socat PIPE): long-lived connections through a forward. */
const ECHO_PORT = 9100
/** Source port (in inet) of the UDP flow that runs through a lease across a crash. */
const STALE_FLOW_PORT = 40000

/**
 * A long-lived TCP connection from the internet namespace to public:port that writes a line every
 * 100 ms and counts the echoes. Bounded: it ends itself after 30 s.
 */
const ECHO_CLIENT = `
import net from 'node:net'
const s = net.connect({ host: process.env.H, port: Number(process.env.P) })
s.setEncoding('utf8')
let n = 0
let t
s.on('connect', () => { console.log('connected'); t = setInterval(() => { if (!s.destroyed) s.write('ping ' + n++ + '\\n') }, 100) })
s.on('data', (d) => { for (const l of d.split('\\n')) if (l) console.log('echo ' + l) })
s.on('error', (e) => console.log('error ' + e.code))
s.on('close', () => { clearInterval(t); console.log('closed'); process.exit(0) })
setTimeout(() => { console.log('timeout'); process.exit(0) }, 30000)
`

interface EchoConn {
  readonly lines: string[]
  echoes(): number
  ended(): boolean
  stop(): void
}

function echoConnection(lab: Lab, port: number): EchoConn {
  const child = lab.spawn('inet', 'node', ['--input-type=module', '-e', ECHO_CLIENT], {
    env: { H: lab.ips.public, P: String(port) },
    reject: false,
    buffer: false,
  })
  const lines: string[] = []
  let rest = ''
  child.stdout?.setEncoding('utf8')
  child.stdout?.on('data', (c: string) => {
    rest += c
    const parts = rest.split('\n')
    rest = parts.pop() ?? ''
    lines.push(...parts)
  })
  return {
    lines,
    echoes: () => lines.filter((l) => l.startsWith('echo ')).length,
    ended: () => lines.some((l) => l === 'closed' || l.startsWith('error ') || l === 'timeout'),
    stop: () => {
      if (child.exitCode === null && child.pid !== undefined) child.kill('SIGKILL')
    },
  }
}

// ------------------------------------------------------------------------------------ fuzz --

/** Valid requests to mutate: NAT-PMP (RFC 6886) and PCP (RFC 6887) MAP, PEER and ANNOUNCE from clientIp. */
function seeds(rnd: () => number, clientIp: string): Buffer[] {
  const int = (n: number): number => Math.floor(rnd() * n)
  const mappedIp = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...clientIp.split('.').map(Number)])
  const pcpHeader = (op: number, lifetime: number): Buffer => {
    const h = Buffer.alloc(24)
    h[0] = 2
    h[1] = op
    h.writeUInt32BE(lifetime >>> 0, 4)
    mappedIp.copy(h, 8)
    return h
  }
  const mapBody = (): Buffer => {
    const b = Buffer.alloc(36)
    for (let i = 0; i < 12; i++) b[i] = int(256)
    b[12] = rnd() < 0.5 ? 6 : 17
    b.writeUInt16BE(1024 + int(64000), 16)
    b.writeUInt16BE(rnd() < 0.5 ? 0 : 1024 + int(64000), 18)
    return b
  }
  const peerBody = (): Buffer => {
    const b = Buffer.alloc(56)
    mapBody().copy(b, 0)
    b.writeUInt16BE(int(65536), 36)
    Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, int(256)]).copy(b, 40)
    return b
  }
  return [
    natpmpPublicAddress(),
    natpmpMap('tcp', 1024 + int(64000), int(65536), int(7200)),
    natpmpMap('udp', 1024 + int(64000), 0, rnd() < 0.2 ? 0 : 1 + int(7200)),
    Buffer.concat([pcpHeader(1, int(7200)), mapBody()]),
    Buffer.concat([pcpHeader(2, int(7200)), peerBody()]),
    pcpHeader(0, 0),
  ]
}

function mutate(rnd: () => number, p: Buffer): Buffer {
  const int = (n: number): number => Math.floor(rnd() * n)
  let b: Buffer = Buffer.from(p)
  switch (int(8)) {
    case 0: // flip a few bytes
      for (let k = 1 + int(4); k > 0 && b.length > 0; k--) b[int(b.length)] = int(256)
      break
    case 1: // truncate
      b = b.subarray(0, int(b.length + 1))
      break
    case 2: // extend (PCP options, junk), up to beyond the 1100-byte PCP maximum
      b = Buffer.concat([b, randomBytesFrom(rnd, int(rnd() < 0.1 ? 1200 : 64))])
      break
    case 3: // random version
      if (b.length > 0) b[0] = int(256)
      break
    case 4: // random opcode, sometimes with the response bit
      if (b.length > 1) b[1] = int(256)
      break
    case 5: // extreme lifetimes and ports
      if (b.length >= 12) {
        b.writeUInt32BE(rnd() < 0.5 ? 0xffffffff : int(3), 8)
        b.writeUInt16BE(rnd() < 0.5 ? 0 : 65535, 4)
      }
      break
    case 6: // pure noise of a random length
      b = randomBytesFrom(rnd, int(120))
      break
    default: // unchanged: valid requests mixed in
      break
  }
  return b
}

function randomBytesFrom(rnd: () => number, n: number): Buffer {
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i++) b[i] = Math.floor(rnd() * 256)
  return b
}

// -------------------------------------------------------------------------------- the suite --

describe.runIf(isRoot)('robustness (issue 5, end to end)', () => {
  let lab: Lab
  let wgpmp: Wgpmp | undefined
  let api: ApiClient
  let config: ConfigInput
  const conns: EchoConn[] = []
  let staleFlowReady = false
  const web = (): string => `c1-web ${lab.ips.inet}`

  beforeAll(async () => {
    lab = await startLab()
    const tokenFile = `${lab.dir}/api-token`
    await writeFile(tokenFile, `${TOKEN}\n`, { mode: 0o600 })
    config = labConfig(lab, {
      // The default port range (1024-65535), so the reserved ports below are inside it.
      lifetime_min_seconds: 2,
      api_token_file: tokenFile,
      api_listen: `127.0.0.1:${API_PORT}`,
    })
    wgpmp = await startWgpmp(lab, config)
    api = apiClient(lab, API_PORT, TOKEN)
    await serveTcp(lab, 'c1', lab.ips.c1, 8080, 'c1-web')
    await listen(lab, 'c1', 'udp', lab.ips.c1, 9001, 'c1-udp')
    await serveTcp(lab, 'c2', lab.ips.c2, 8080, 'c2-web')
    void lab.spawn('c1', 'socat', [`TCP-LISTEN:${ECHO_PORT},bind=${lab.ips.c1},reuseaddr,fork`, 'PIPE'])
    await waitFor(async () => (await lab.exec('c1', 'ss', ['-Hltn', `sport = :${ECHO_PORT}`])).stdout.includes(`:${ECHO_PORT}`), {
      timeoutMs: 5_000,
      what: 'echo listener',
    })
  })
  afterAll(async () => {
    for (const c of conns) c.stop()
    await wgpmp?.stop()
    await lab?.down()
  })

  /** One datagram of the UDP flow inet:STALE_FLOW_PORT -> public:20301; c1's answer, or ''. */
  const staleFlow = async (): Promise<string> => {
    const r = await udpSend(lab, 'inet', [Buffer.from('hello\n')], {
      bind: lab.ips.inet,
      bindPort: STALE_FLOW_PORT,
      dst: lab.ips.public,
      port: 20301,
      mode: 'request',
      tries: 4,
      gapMs: 250,
    })
    return r.replies[0] === undefined ? '' : Buffer.from(r.replies[0], 'hex').toString().trim()
  }
  const metrics = async (): Promise<string> => {
    const r = await api.call('GET', '/metrics')
    expect(r.status).toBe(200)
    return r.text
  }

  it('never grants the WireGuard listen port, a port the host listens on, or the API port', async () => {
    await serveTcp(lab, 'srv', '0.0.0.0', 18080, 'srv-host-service')
    // The daemon rereads the host's ports when its last read is older than 250 ms (documented in
    // src/host/listening.ts): a service started less than that before a request may be missed.
    await sleep(300)
    const cases: [number, 'tcp' | 'udp'][] = [
      [lab.wgPort, 'udp'],
      [lab.wgPort, 'tcp'],
      [18080, 'tcp'],
      [18080, 'udp'],
      [API_PORT, 'tcp'],
    ]
    for (const [port, proto] of cases) {
      const r = await natpmpc(lab, 'c1', ['-a', String(port), String(port), proto, '3600'])
      expect(r.ok, r.out).toBe(true)
      expect(r.port, `${proto}/${port}`).not.toBeNull()
      expect(r.port, `${proto}/${port}`).not.toBe(port)
      await natpmpc(lab, 'c1', ['-a', '0', String(port), proto, '0'])
    }
    const m = await nftForwards(lab)
    for (const p of [lab.wgPort, 18080, API_PORT]) expect(m).not.toMatch(new RegExp(`\\. ${p} :`))
    // The host's service is still its own, and WireGuard still works (c1 talks through the tunnel).
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 18080)).toBe(`srv-host-service ${lab.ips.inet}`)
    expect(await talk(lab, 'c1', 'tcp', lab.ips.public, 18080)).toMatch(/^srv-host-service /)
  })

  it('hairpin: another client, the client itself and the server reach a forward through the public address', async () => {
    const r = await natpmpc(lab, 'c1', ['-a', '20100', '8080', 'tcp', '3600'])
    expect(r.port).toBe(20100)
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20100)).toBe(web())
    // Masqueraded to the server's tunnel address, so the reply returns through the server.
    expect(await talk(lab, 'c2', 'tcp', lab.ips.public, 20100)).toBe(`c1-web ${lab.ips.wgSrv}`)
    expect(await talk(lab, 'c1', 'tcp', lab.ips.public, 20100)).toBe(`c1-web ${lab.ips.wgSrv}`)
    expect(await talk(lab, 'srv', 'tcp', lab.ips.public, 20100)).toMatch(/^c1-web /)
    // And c2's own forward from c1's side too.
    const r2 = await natpmpc(lab, 'c2', ['-a', '20101', '8080', 'tcp', '3600'])
    expect(r2.port).toBe(20101)
    expect(await talk(lab, 'c1', 'tcp', lab.ips.public, 20101)).toBe(`c2-web ${lab.ips.wgSrv}`)
  })

  it('an established TCP connection through a forward is cut when the forward is deleted', async () => {
    const r = await natpmpc(lab, 'c1', ['-a', '20200', String(ECHO_PORT), 'tcp', '3600'])
    expect(r.port).toBe(20200)
    const conn = echoConnection(lab, 20200)
    conns.push(conn)
    await waitFor(() => conn.echoes() >= 5, { timeoutMs: 5_000, what: 'echoes through the forward' })
    const t0 = performance.now()
    const del = await natpmpc(lab, 'c1', ['-a', '0', String(ECHO_PORT), 'tcp', '0'])
    expect(del.ok, del.out).toBe(true)
    expect(hasForward(await nftForwards(lab), 'tcp', 20200)).toBe(false)
    await waitFor(() => conn.ended(), { timeoutMs: 5_000, intervalMs: 50, what: 'the connection to end after its forward was deleted' })
    console.log(`forward deleted -> connection ended in ${Math.round(performance.now() - t0)} ms: ${conn.lines.slice(-2).join(' | ')}`)
    expect(conn.lines.some((l) => l === 'timeout')).toBe(false)
    const n = conn.echoes()
    await sleep(500)
    expect(conn.echoes()).toBe(n)
  })

  it('kill -9 then restart with traffic flowing: the forward keeps working on the same port; a lease that expired meanwhile is gone', async () => {
    const keep = await natpmpc(lab, 'c1', ['-a', '20300', String(ECHO_PORT), 'tcp', '3600'])
    expect(keep.port).toBe(20300)
    const conn = echoConnection(lab, 20300)
    conns.push(conn)
    await waitFor(() => conn.echoes() >= 3, { timeoutMs: 5_000, what: 'echoes through the forward' })
    // The short lease, then at once a UDP flow through it (fixed source port) and the crash.
    const short = await natpmpc(lab, 'c1', ['-a', '20301', '9001', 'udp', '2'])
    const shortExpires = Date.now() + 2_000
    expect(short.port).toBe(20301)
    expect(short.out).toMatch(/li(?:f|)e?time 2\b/) // natpmpc prints "liftime"
    expect(await staleFlow()).toBe(`c1-udp ${lab.ips.inet}`)
    // Both leases are on disk before the crash: since issue 10 in the journal next to the state
    // file (fdatasync'ed before the reply); the snapshot follows within 10 s.
    await waitFor(
      async () => {
        const s =
          (await readFile(config.state_file!, 'utf8').catch(() => '')) +
          (await Promise.all([0, 1, 2, 3].map((g) => readFile(`${config.state_file!}.journal.${g}`, 'utf8').catch(() => '')))).join('')
        return s.includes('20300') && s.includes('20301')
      },
      { timeoutMs: 1_000, intervalMs: 20, what: 'the leases in the state file or its journal' },
    )

    const old = wgpmp!
    expect(await old.stop('SIGKILL')).toBeNull()
    wgpmp = undefined
    expect(await alive(old.pid)).toBe(false)
    // Nobody tears down after a crash: the kernel still forwards (the traffic keeps flowing).
    const during = await nftForwards(lab)
    expect(hasForward(during, 'tcp', 20300)).toBe(true)
    expect(hasForward(during, 'udp', 20301)).toBe(true)
    const echoesAtKill = conn.echoes()
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20300)).toBe('hello')
    // Downtime longer than the short lease.
    await sleep(Math.max(0, shortExpires - Date.now()) + 1_500)
    expect(hasForward(await nftForwards(lab), 'udp', 20301)).toBe(true) // still the stale one
    // The UDP flow goes on through the stale element (nobody can remove it while the daemon is down).
    expect(await staleFlow()).toBe(`c1-udp ${lab.ips.inet}`)
    expect(conn.echoes()).toBeGreaterThan(echoesAtKill)

    wgpmp = await startWgpmp(lab, config)
    const restored = await wgpmp.waitLog('leases restored')
    expect(restored).toMatchObject({ expired: 1 })
    expect(Number(restored.restored)).toBeGreaterThanOrEqual(1)
    const after = await nftForwards(lab)
    expect(after).toContain(`tcp . 20300 : ${lab.ips.c1} . ${ECHO_PORT}`)
    expect(hasForward(after, 'udp', 20301)).toBe(false)
    expect(await talk(lab, 'inet', 'udp', lab.ips.public, 20301)).toBe('')
    // The connection that was flowing through the crash and the restart still flows.
    const n = conn.echoes()
    await waitFor(() => conn.echoes() >= n + 5, { timeoutMs: 5_000, what: 'echoes after the restart' })
    expect(conn.ended()).toBe(false)
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20300)).toBe('hello')
    // A renewal gets the same external port.
    expect((await natpmpc(lab, 'c1', ['-a', '0', String(ECHO_PORT), 'tcp', '3600'])).port).toBe(20300)
    conn.stop()
    staleFlowReady = true
  })

  // Regression: a restart used to drop such a lease from the map but leave its conntrack entries,
  // so a flow that kept going (UDP from inet:STALE_FLOW_PORT) still reached the client. The
  // daemon now reads the old table before replacing it and ends the flows of what it does not restore.
  it('after kill -9 and restart, a flow through the lease that expired during the downtime no longer reaches the client', async () => {
    expect(staleFlowReady).toBe(true)
    expect(hasForward(await nftForwards(lab), 'udp', 20301)).toBe(false)
    expect(await staleFlow()).toBe('')
  })

  it('`nft flush ruleset` in the server namespace: the forward works again within a few seconds', async () => {
    // Live forwards: tcp 20100 -> c1:8080 (hairpin test) and tcp 20300 -> c1:echo (restored after the crash).
    const before = await nftForwards(lab)
    expect(before).toContain(`tcp . 20100 : ${lab.ips.c1} . 8080`)
    expect(before).toContain(`tcp . 20300 : ${lab.ips.c1} . ${ECHO_PORT}`)
    const t0 = performance.now()
    await lab.exec('srv', 'nft', ['flush', 'ruleset'])
    await restoreLabnat(lab) // the lab's own masquerade went with it
    await waitFor(
      async () => {
        const m = await nftForwards(lab)
        return m.includes(`tcp . 20100 : ${lab.ips.c1} . 8080`) && m.includes(`tcp . 20300 : ${lab.ips.c1} . ${ECHO_PORT}`)
      },
      { timeoutMs: 5_000, intervalMs: 50, what: 'the table rebuilt with its forwards' },
    )
    const rebuilt = Math.round(performance.now() - t0)
    await waitFor(async () => (await talk(lab, 'inet', 'tcp', lab.ips.public, 20100)) === web(), {
      timeoutMs: 5_000,
      intervalMs: 200,
      what: 'traffic through the rebuilt forward',
    })
    const working = Math.round(performance.now() - t0)
    console.log(`nft flush ruleset -> table rebuilt in ${rebuilt} ms, traffic flowing after ${working} ms`)
    expect(working).toBeLessThanOrEqual(5_000)
    await wgpmp!.waitLog('table rebuilt')
    expect(metricSum(await metrics(), 'wgpmp_table_rebuilds_total')).toBeGreaterThanOrEqual(1)
    // The input guard is back too (the whole base table): and NAT-PMP still works.
    expect((await lab.exec('srv', 'nft', ['list', 'chain', 'inet', 'wgpmp', 'input'])).stdout).toContain('5351')
    expect((await natpmpc(lab, 'c1', ['-a', '20311', '8081', 'tcp', '3600'])).port).toBe(20311)
  })

  it('a 20k-packet flood from one client does not stop another client from mapping a port', async () => {
    const dropsBefore = metricSum(await metrics(), 'wgpmp_requests_dropped_total', 'reason="rate-limit"')
    const flood: Buffer[] = []
    for (let i = 0; i < 20_000; i++) flood.push(i % 2 === 0 ? natpmpPublicAddress() : natpmpMap('udp', 7000, 20450, 3600))
    const t0 = performance.now()
    const flooding = udpSend(lab, 'c2', flood, { bind: lab.ips.c2, dst: lab.ips.wgSrv, mode: 'stream', batch: 160, gapMs: 12, waitMs: 500, timeoutMs: 20_000 })
    await sleep(400)
    const s0 = performance.now()
    const r = await natpmpc(lab, 'c1', ['-a', '20400', '9001', 'udp', '3600'])
    const natpmpcMs = Math.round(performance.now() - s0)
    const f = await flooding
    const floodMs = Math.round(performance.now() - t0)
    const drops = metricSum(await metrics(), 'wgpmp_requests_dropped_total', 'reason="rate-limit"') - dropsBefore
    console.log(
      `flood: ${f.sent} sent in ${f.ms} ms (send errors ${f.errors}), ${f.count} answered, ${drops} dropped by the rate limit; natpmpc from c1 took ${natpmpcMs} ms (flood ${floodMs} ms)`,
    )
    expect(f.sent).toBe(20_000)
    expect(f.ms).toBeLessThan(6_000)
    expect(natpmpcMs).toBeLessThan(f.ms) // it finished while the flood was still going
    expect(r.ok, r.out).toBe(true)
    expect(r.port).toBe(20400)
    // UDP: one datagram may be lost right after the flood; a few tries.
    await waitFor(async () => (await talk(lab, 'inet', 'udp', lab.ips.public, 20400)) === `c1-udp ${lab.ips.inet}`, {
      timeoutMs: 10_000,
      intervalMs: 200,
      what: 'UDP traffic through the new forward',
    })
    // The flood reached the daemon and was dropped there, nearly all of it unanswered.
    expect(drops).toBeGreaterThan(10_000)
    expect(f.count).toBeLessThan(500)
    expect(await alive(wgpmp!.pid)).toBe(true)
    expect((await natpmpc(lab, 'c2', [])).out).toContain(`Public IP address : ${lab.ips.public}`)
  })

  it('a fuzz of 7,000 random and mutated NAT-PMP/PCP packets: the daemon still answers correctly, lives, and its memory stays bounded', async () => {
    // A daemon with the rate limit out of the way, so every packet is parsed and answered.
    await wgpmp!.stop('SIGTERM')
    wgpmp = undefined
    wgpmp = await startWgpmp(
      lab,
      labConfig(lab, { state_file: `${lab.dir}/state-fuzz.json`, rate_limit_per_second: 100_000, rate_limit_burst: 100_000 }),
      'config-fuzz',
    )
    const d = wgpmp
    expect((await natpmpc(lab, 'c1', [])).out).toContain(`Public IP address : ${lab.ips.public}`) // warm up
    const rssStart = (await vmRssKb(d.pid))!
    const seed = Number(process.env.WGPMP_FUZZ_SEED ?? randomBytes(4).readUInt32BE(0))
    const rnd = prng(seed)
    // 7 chunks of 1,000 packets; VmRSS after each. The first 2,000 are the warm-up: V8 grows its heap
    // (JIT, first GCs, c1's lease table filling up to max_forwards_per_client) by some tens of MB and
    // then levels off around 120-130 MB (seen over 30,000 packets while writing this test); the
    // 50 MB bound applies to the 5,000 packets after the warm-up, a looser one to the whole run.
    const rss: number[] = [rssStart]
    let sent = 0
    let answered = 0
    for (let chunk = 0; chunk < 7; chunk++) {
      const packets: Buffer[] = []
      for (let i = 0; i < 1_000; i++) {
        const base = seeds(rnd, lab.ips.c1)
        packets.push(mutate(rnd, base[Math.floor(rnd() * base.length)]!))
      }
      const f = await udpSend(lab, 'c1', packets, {
        bind: lab.ips.c1,
        dst: lab.ips.wgSrv,
        mode: 'stream',
        batch: 50,
        gapMs: 20,
        waitMs: 300,
        timeoutMs: 30_000,
      })
      sent += f.sent
      answered += f.count
      rss.push((await vmRssKb(d.pid)) ?? NaN)
    }
    await sleep(500)
    const rssBefore = rss[2]!
    const rssAfter = await vmRssKb(d.pid)
    rss.push(rssAfter ?? NaN)
    console.log(
      `fuzz seed ${seed} (replay: WGPMP_FUZZ_SEED=${seed}): ${sent} sent, ${answered} answered; VmRSS kB at start, after each 1,000, at the end: ${rss.join(' ')}; after warm-up ${rssBefore} kB -> ${rssAfter} kB`,
    )
    expect(sent).toBe(7_000)
    expect(answered).toBeGreaterThan(1_000) // the packets did reach the daemon
    expect(rssAfter! - rssStart).toBeLessThan(100 * 1024)
    expect(await alive(d.pid)).toBe(true)
    expect(rssAfter).not.toBeNull()
    expect(rssAfter! - rssBefore).toBeLessThan(50 * 1024)
    expect(d.lines.filter((l) => Number(l.level) >= 60)).toEqual([])

    // Still answers correctly: the public address, a delete of everything c1 holds, a new mapping with traffic.
    expect((await natpmpc(lab, 'c1', [])).out).toContain(`Public IP address : ${lab.ips.public}`)
    for (const proto of ['tcp', 'udp']) expect((await natpmpc(lab, 'c1', ['-a', '0', '0', proto, '0'])).ok).toBe(true)
    const r = await natpmpc(lab, 'c1', ['-a', '20900', '8080', 'tcp', '3600'])
    expect(r.port, r.out).toBe(20900)
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20900)).toBe(web())
    expect((await natpmpc(lab, 'c2', ['-a', '20901', '8080', 'tcp', '3600'])).port).toBe(20901)
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20901)).toBe(`c2-web ${lab.ips.inet}`)
  })
})
