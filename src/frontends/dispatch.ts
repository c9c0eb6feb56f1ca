/**
 * The UDP 5351 socket's handler: NAT-PMP and PCP share it (RFC 6887 §9). Byte 0 is the version:
 * 0 is NAT-PMP, anything else PCP (which answers UNSUPP_VERSION for versions it does not speak).
 * With PCP off, NAT-PMP's 8-byte reply makes PCP clients fall back.
 */
import { canonicalAddress } from '../core/ip.js'
import { NATPMP_VERSION } from '../protocol/constants.js'

export interface DispatchDeps {
  natpmp: { handle(msg: Uint8Array, from: string): Promise<Uint8Array | null> }
  pcp: { handle(msg: Uint8Array, from: string): Promise<Uint8Array | null> } | null
  /** False: the sender has used up its rate; the packet is dropped before any work. */
  allow: (source: string) => boolean
  dropped: (why: 'rate-limit') => void
  /** Told of every request that passed the rate limit (canonical source address). */
  seen?: (from: string) => void
  /** Runs before each request, without waiting (the host's listening ports are refreshed in the background). */
  before: () => void
}

export function pmpDispatch(d: DispatchDeps): (msg: Uint8Array, src: string) => Promise<Uint8Array | null> {
  return async (msg, src) => {
    // One client flooding 5351 is dropped here, before any work, and cannot slow another.
    if (!d.allow(src)) {
      d.dropped('rate-limit')
      return null
    }
    d.before()
    const from = canonicalAddress(src) ?? src
    d.seen?.(from)
    return msg.byteLength > 0 && msg[0] !== NATPMP_VERSION && d.pcp ? d.pcp.handle(msg, from) : d.natpmp.handle(msg, from)
  }
}
