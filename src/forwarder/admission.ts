/**
 * Admission: who may ask for a forward. A client is a peer of the WireGuard interface, asking
 * from its tunnel address inside the interface's prefix (never the server's own address). A peer
 * added a moment ago may not be read yet: an unknown address triggers one (rate-limited) re-read.
 */
import { isV6 } from '../core/forward.js'
import { inCidr4, parseIPv4, type Cidr4, type Cidr6 } from '../core/ip.js'

export interface AdmissionDeps {
  wg4: Cidr4
  wg6: Cidr6 | null
  /** Is this address a known peer's? */
  known: (address: string) => boolean
  /** Re-reads the peers unless that happened within the last moments. */
  refreshIfStale: () => Promise<void>
}

export function admission(d: AdmissionDeps): (address: string) => Promise<boolean> {
  const inPrefix = (address: string): boolean => {
    if (isV6(address)) return d.wg6 !== null && address !== d.wg6.address // IPv6: any peer address (ULA or routed global prefix)
    const ip = parseIPv4(address)
    return ip !== null && inCidr4(d.wg4, ip) && ip !== d.wg4.addr
  }
  return async (address) => {
    if (!inPrefix(address)) return false
    if (d.known(address)) return true
    await d.refreshIfStale()
    return d.known(address)
  }
}
