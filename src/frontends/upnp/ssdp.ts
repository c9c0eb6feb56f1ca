/**
 * SSDP on the WireGuard interface only: answers M-SEARCH with unicast replies; sends no NOTIFY.
 *
 * Two sockets on port 1900:
 * - one bound to the group address 239.255.255.250, joined on the WireGuard address only
 *   (addMembership(group, wgAddress)): it receives multicast searches and nothing sent to a
 *   unicast address;
 * - one bound to the WireGuard address: it receives unicast searches to wgAddress:1900 and sends
 *   every reply (from wgAddress:1900, so the reply's source is the tunnel address).
 * Node cannot tell which interface a datagram came in on (no IP_PKTINFO), and Linux delivers a
 * group's datagrams to every socket bound to it whichever interface joined, so each search is
 * also checked at the source: it must come from a client (inside the WireGuard prefix, a
 * configured peer), else it is dropped unanswered. The input chain drops UDP 1900 arriving on any
 * other interface (nft/wgpmp.nft, the iptables driver), so the public side gets nothing: no SSDP
 * reflection. Searches are rate-limited per source before any work.
 *
 * No NOTIFY: a peer's AllowedIPs never route the group back from the server (docs/upnp.md §2.2),
 * so announcements would reach nobody; clients find the gateway by searching.
 */
import { createSocket, type Socket } from 'node:dgram'
import type { Logger } from '../../log.js'
import type { DeviceIds } from './description.js'
import { buildReplies, parseMSearch, SSDP_GROUP, SSDP_PORT, type ReplyOptions } from './ssdp-codec.js'

export interface SsdpOptions {
  /** The server's WireGuard IPv4 address. */
  readonly wgAddress: string
  /** 1900; tests use another port. */
  readonly port?: number
  readonly ids: DeviceIds
  readonly reply: Omit<ReplyOptions, 'date'>
  readonly isClient: (address: string) => Promise<boolean>
  /** Per-source admission (a token bucket): false drops the search. */
  readonly allow: (source: string) => boolean
  readonly log: Logger
  /** Counts each search: answered, or why not. */
  readonly count?: (outcome: 'answered' | 'no-match' | 'not-a-client' | 'rate-limit' | 'not-a-search') => void
}

export interface SsdpServer {
  /** The unicast socket's address. */
  readonly address: { address: string; port: number }
  close(): Promise<void>
}

const bind = (sock: Socket, address: string, port: number): Promise<void> =>
  new Promise<void>((resolve, reject) => {
    sock.once('error', reject)
    sock.bind({ address, port }, () => {
      sock.off('error', reject)
      resolve()
    })
  })

export async function startSsdp(o: SsdpOptions): Promise<SsdpServer> {
  const port = o.port ?? SSDP_PORT
  // reuseAddr: another SSDP responder on the host (minissdpd, a media server on the LAN) may hold *:1900.
  const unicast = createSocket({ type: 'udp4', reuseAddr: true })
  const group = createSocket({ type: 'udp4', reuseAddr: true })
  const closeAll = async (): Promise<void> => {
    await Promise.all(
      [unicast, group].map(
        (s) =>
          new Promise<void>((resolve) => {
            try {
              s.close(() => resolve())
            } catch {
              resolve() // never bound
            }
          }),
      ),
    )
  }
  try {
    await bind(unicast, o.wgAddress, port)
    await bind(group, SSDP_GROUP, port)
    group.addMembership(SSDP_GROUP, o.wgAddress)
  } catch (err) {
    await closeAll()
    throw err
  }

  const onMessage = (msg: Buffer, rinfo: { address: string; port: number }): void => {
    const source = rinfo.address
    if (!o.allow(source)) {
      o.count?.('rate-limit')
      return
    }
    const search = parseMSearch(msg)
    if (search === null) {
      o.count?.('not-a-search')
      return
    }
    o.isClient(source).then(
      (ok) => {
        if (!ok) {
          o.count?.('not-a-client')
          o.log.debug({ source }, 'ssdp: search from a non-client ignored')
          return
        }
        const replies = buildReplies(search, o.ids, { ...o.reply, date: new Date().toUTCString() })
        o.count?.(replies.length > 0 ? 'answered' : 'no-match')
        for (const r of replies) unicast.send(r, rinfo.port, source, (err) => err && o.log.debug({ err, to: source }, 'ssdp: send failed'))
      },
      (err: unknown) => o.log.error({ err, source }, 'ssdp: handler failed'),
    )
  }
  for (const s of [unicast, group]) {
    s.on('message', onMessage)
    s.on('error', (err) => o.log.error({ err }, 'ssdp: socket error'))
  }
  const a = unicast.address()
  return { address: { address: a.address, port: a.port }, close: closeAll }
}
