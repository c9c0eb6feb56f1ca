/**
 * What every front-end gets: the forwarder (the one place leases change) and the few facts a
 * protocol reports besides (the epoch, the client's public address). A new front-end is one
 * folder next to this file and one line of wiring in daemon.ts.
 */
import type { Forwarder } from '../forwarder/forwarder.js'
import type { Logger } from '../log.js'

export interface FrontendContext {
  forwarder: Forwarder
  /** Seconds since the mapping table's epoch began (RFC 6886 §3.6, RFC 6887 §8.5). */
  epochSeconds: () => number
  /**
   * The external address for a client: the public IPv4 address for an IPv4 client, the public
   * IPv6 address for a unique-local IPv6 client (NAT66), the client's own for a global one
   * (pinhole); null if unknown.
   */
  publicAddress: (client: string) => string | null
  log: Logger
  /** Counts each answered request by opcode and result (metrics). */
  count?: (op: number, result: number) => void
}
