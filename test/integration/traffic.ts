/** Real traffic in the lab: one-line socat exchanges and listeners that name themselves. */
import { waitFor, type Lab, type LabNs } from './lab.js'

export type Proto = 'tcp' | 'udp'
/** socat: give up connecting / waiting for a reply after this many seconds. */
const SOCAT_WAIT_S = '2'

/** Sends one line with socat from namespace `from` and returns what came back ('' on failure; never throws). */
export async function talk(lab: Lab, from: LabNs, proto: Proto, dst: string, port: number, opts: { sourcePort?: number } = {}): Promise<string> {
  const addr =
    proto === 'tcp'
      ? `TCP:${dst}:${port},connect-timeout=${SOCAT_WAIT_S}`
      : `UDP:${dst}:${port}${opts.sourcePort === undefined ? '' : `,sourceport=${opts.sourcePort}`}`
  const r = await lab.exec(from, 'socat', ['-T', SOCAT_WAIT_S, '-t', SOCAT_WAIT_S, '-', addr], {
    input: 'hello\n',
    reject: false,
    timeout: 10_000,
  })
  return r.stdout.trim()
}

/**
 * A listener (killed by lab.down()) that answers every connection or datagram with "NAME PEER-ADDRESS".
 * It reads the client's line before answering: closing with unread data makes the kernel send a
 * RST, which can destroy the answer before the client reads it.
 */
export async function listen(lab: Lab, ns: LabNs, proto: Proto, bind: string, port: number, name: string): Promise<void> {
  const addr = proto === 'tcp' ? `TCP-LISTEN:${port},bind=${bind},reuseaddr,fork` : `UDP-RECVFROM:${port},bind=${bind},fork`
  void lab.spawn(ns, 'socat', [addr, `SYSTEM:read -r line; echo ${name} $SOCAT_PEERADDR`])
  const flag = proto === 'tcp' ? '-Hltn' : '-Hlun'
  await waitFor(async () => (await lab.exec(ns, 'ss', [flag, `sport = :${port}`])).stdout.includes(`:${port}`), {
    timeoutMs: 5_000,
    what: `${name} listening on ${proto}/${port}`,
  })
}
