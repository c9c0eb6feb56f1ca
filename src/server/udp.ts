/** The NAT-PMP/PCP UDP socket: bound to the WireGuard address so replies leave from it (clients check). */
import { createSocket, type Socket } from 'node:dgram'
import type { Logger } from '../log.js'

export interface UdpServer {
  readonly address: { address: string; port: number }
  close(): Promise<void>
}

export type Handler = (msg: Uint8Array, source: string) => Promise<Uint8Array | null>

export async function startUdpServer(host: string, port: number, handler: Handler, log: Logger, type: 'udp4' | 'udp6' = 'udp4'): Promise<UdpServer> {
  const sock: Socket = createSocket({ type, ...(type === 'udp6' ? { ipv6Only: true } : {}) })
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject)
    sock.bind({ address: host, port, exclusive: true }, () => {
      sock.off('error', reject)
      resolve()
    })
  })
  sock.on('error', (err) => log.error({ err }, 'udp socket error'))
  sock.on('message', (msg, rinfo) => {
    handler(msg, rinfo.address).then(
      (reply) => {
        if (reply) sock.send(reply, rinfo.port, rinfo.address, (err) => err && log.debug({ err, to: rinfo.address }, 'udp send failed'))
      },
      (err: unknown) => log.error({ err, source: rinfo.address }, 'udp handler failed'),
    )
  })
  const a = sock.address()
  return {
    address: { address: a.address, port: a.port },
    close: () => new Promise<void>((resolve) => sock.close(() => resolve())),
  }
}
