/**
 * "Does my port work?": the daemon connects to a forward's public address:port itself. The nat
 * table's output chain DNATs the host's own traffic like the internet's, so the connection runs
 * through the same forward into the tunnel. The probe's source is the server's WireGuard address,
 * so that the client's reply comes back through the tunnel even when the client routes only the
 * tunnel prefix (split tunnel). TCP: answered (connected) / refused (RST) / timed out. UDP: one
 * datagram; answered if anything comes back, refused on ICMP port unreachable, else no reply
 * (which for UDP proves nothing: many services stay silent).
 */
import { createSocket } from 'node:dgram'
import { connect } from 'node:net'

export type ProbeOutcome = 'answered' | 'refused' | 'timed-out' | 'no-reply' | 'host-firewall' | 'error'

export interface ProbeResult {
  readonly outcome: ProbeOutcome
  readonly protocol: 'tcp' | 'udp'
  /** What was probed, "198.51.100.1:43956". */
  readonly target: string
  readonly ms: number
  /** One sentence for people. */
  readonly message: string
}

export interface ProbeOptions {
  protocol: 'tcp' | 'udp'
  publicAddress: string
  port: number
  /** Source address: the server's WireGuard address. */
  localAddress?: string
  timeoutMs?: number
  /**
   * Optional: another component's host-firewall check (issue 13 leaves the seam open). When it
   * says outside traffic to forwards is dropped before the DNAT, the probe (which does not cross
   * that filter) would say "answered" wrongly, so the result says so instead.
   */
  hostFirewallBlocks?: (() => boolean) | undefined
}

const hostPort = (a: string, p: number): string => (a.includes(':') ? `[${a}]:${p}` : `${a}:${p}`)

export async function probeForward(o: ProbeOptions): Promise<ProbeResult> {
  const target = hostPort(o.publicAddress, o.port)
  const timeout = o.timeoutMs ?? 3000
  const t0 = performance.now()
  const done = (outcome: ProbeOutcome, message: string): ProbeResult => ({
    outcome,
    protocol: o.protocol,
    target,
    ms: Math.round(performance.now() - t0),
    message,
  })
  let blocked = false
  try {
    blocked = o.hostFirewallBlocks?.() === true
  } catch {
    blocked = false
  }
  if (blocked)
    return done(
      'host-firewall',
      `The host firewall drops outside traffic to forwarded ports before it reaches ${target}: open it (see the README) and test again.`,
    )
  if (o.protocol === 'tcp') {
    return new Promise<ProbeResult>((resolve) => {
      const s = connect({ host: o.publicAddress, port: o.port, ...(o.localAddress ? { localAddress: o.localAddress } : {}) })
      const finish = (r: ProbeResult): void => {
        clearTimeout(timer)
        s.destroy()
        resolve(r)
      }
      const timer = setTimeout(
        () =>
          finish(
            done(
              'timed-out',
              `No answer from ${target} within ${timeout / 1000} s: is the service on the client running and listening on the tunnel address, and does the client's own firewall allow it?`,
            ),
          ),
        timeout,
      )
      s.once('connect', () => finish(done('answered', `${target} answered: the client's service accepted a TCP connection.`)))
      s.once('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ECONNREFUSED') finish(done('refused', `${target} reached the client, but nothing listens on its port (connection refused).`))
        else finish(done('error', `Cannot probe ${target}: ${err.code ?? err.message}.`))
      })
    })
  }
  return new Promise<ProbeResult>((resolve) => {
    const s = createSocket(o.publicAddress.includes(':') ? 'udp6' : 'udp4')
    let settled = false
    const finish = (r: ProbeResult): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      s.close()
      resolve(r)
    }
    const timer = setTimeout(
      () =>
        finish(
          done(
            'no-reply',
            `Sent a datagram to ${target}; nothing came back within ${timeout / 1000} s. Many UDP services do not answer unknown packets, so this proves neither way.`,
          ),
        ),
      timeout,
    )
    s.on('message', () => finish(done('answered', `${target} answered a UDP datagram.`)))
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED') finish(done('refused', `${target} reached the client, but nothing listens on its UDP port (ICMP port unreachable).`))
      else finish(done('error', `Cannot probe ${target}: ${err.code ?? err.message}.`))
    })
    s.bind({ port: 0, ...(o.localAddress ? { address: o.localAddress } : {}) }, () => {
      s.connect(o.port, o.publicAddress, () => s.send(Buffer.from('wgpmp probe\n')))
    })
  })
}

/** The probe of a forward as the API shows it: its first public port, TCP for "both". */
export function probeView(
  v: { protocol: 'tcp' | 'udp' | 'both'; external_port: number | string; client_address: string | null; public_address?: string | null },
  o: { localV4: string; localV6: string | null; hostFirewallBlocks?: (() => boolean) | undefined; timeoutMs?: number },
): Promise<ProbeResult> {
  const port = typeof v.external_port === 'number' ? v.external_port : Number(String(v.external_port).split('-')[0])
  const protocol = v.protocol === 'both' ? 'tcp' : v.protocol
  const pub = v.public_address ?? null
  if (pub === null || !Number.isInteger(port)) {
    return Promise.resolve({
      outcome: 'error',
      protocol,
      target: '?',
      ms: 0,
      message: 'This forward is not installed now (its client is not on the interface).',
    })
  }
  const local = pub.includes(':') ? (o.localV6 ?? undefined) : o.localV4
  return probeForward({
    protocol,
    publicAddress: pub,
    port,
    ...(local ? { localAddress: local } : {}),
    hostFirewallBlocks: o.hostFirewallBlocks,
    ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}),
  })
}

/** When each client address last sent a request (NAT-PMP, PCP, UPnP): bounded, newest kept. */
export class LastSeen {
  private readonly at = new Map<string, number>()
  constructor(private readonly max = 10_000) {}
  note(address: string, unixMs: number): void {
    this.at.delete(address)
    if (this.at.size >= this.max) this.at.delete(this.at.keys().next().value as string)
    this.at.set(address, unixMs)
  }
  /** The latest request of any of these addresses, ISO 8601, or null. */
  latest(addresses: readonly string[]): string | null {
    let best = -1
    for (const a of addresses) best = Math.max(best, this.at.get(a) ?? -1)
    return best < 0 ? null : new Date(best).toISOString()
  }
}
