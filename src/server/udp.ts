/** The NAT-PMP/PCP UDP socket: bound to the WireGuard address so replies leave from it (clients check). */
import { createSocket, type Socket } from 'node:dgram'
import type { Logger } from '../log.js'

export interface UdpServer {
  readonly address: { address: string; port: number }
  /**
   * Stops taking requests at once, lets the ones in flight finish (their replies are sent) for at
   * most `graceMs` (default 3 s), then closes the socket; a request still running after that gets
   * no reply. A reply is never attempted on the closed socket (issue 10 §7: that threw
   * ERR_SOCKET_DGRAM_NOT_RUNNING and crashed the daemon mid-stop). Never rejects.
   */
  close(graceMs?: number): Promise<void>
}

export type Handler = (msg: Uint8Array, source: string) => Promise<Uint8Array | null>

/** Default bound on how long close() waits for requests in flight. */
export const CLOSE_GRACE_MS = 3_000

export async function startUdpServer(host: string, port: number, handler: Handler, log: Logger, type: 'udp4' | 'udp6' = 'udp4'): Promise<UdpServer> {
  const sock: Socket = createSocket({ type, ...(type === 'udp6' ? { ipv6Only: true } : {}) })
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject)
    sock.bind({ address: host, port, exclusive: true }, () => {
      sock.off('error', reject)
      resolve()
    })
  })
  /** closing: no new request is taken; closed: the socket is gone, nothing may be sent. */
  let closing = false
  let closed = false
  const inflight = new Set<Promise<void>>()
  sock.on('error', (err) => log.error({ err }, 'udp socket error'))
  sock.on('message', (msg, rinfo) => {
    if (closing) return
    const p = handler(msg, rinfo.address).then(
      (reply) => {
        if (!reply || closed) return
        // Settles once the datagram has left, so close() does not cut a reply it waited for.
        return new Promise<void>((resolve) => {
          try {
            sock.send(reply, rinfo.port, rinfo.address, (err) => {
              if (err) log.debug({ err, to: rinfo.address }, 'udp send failed')
              resolve()
            })
          } catch (err) {
            log.debug({ err, to: rinfo.address }, 'udp send failed')
            resolve()
          }
        })
      },
      (err: unknown) => log.error({ err, source: rinfo.address }, 'udp handler failed'),
    )
    inflight.add(p)
    void p.then(() => inflight.delete(p))
  })
  const a = sock.address()
  let closingDone: Promise<void> | null = null
  return {
    address: { address: a.address, port: a.port },
    close: (graceMs = CLOSE_GRACE_MS) =>
      (closingDone ??= (async () => {
        closing = true
        if (inflight.size > 0) {
          let timer: ReturnType<typeof setTimeout> | undefined
          await Promise.race([Promise.allSettled([...inflight]), new Promise<void>((r) => (timer = setTimeout(r, graceMs)))])
          clearTimeout(timer)
          if (inflight.size > 0) log.info({ dropped: inflight.size }, 'udp: stopping; requests still running get no reply')
        }
        closed = true
        await new Promise<void>((resolve) => sock.close(() => resolve()))
      })()),
  }
}
