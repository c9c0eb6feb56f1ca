/** The host's addresses and ports that the daemon needs at start. */
import { networkInterfaces } from 'node:os'
import { WgpmpError } from '../core/errors.js'
import type { Exec } from '../core/exec.js'
import { canonicalAddress, isGlobalV6, type Cidr6 } from '../core/ip.js'
import type { Logger } from '../log.js'

/** The first IPv4 address of an interface, or null. */
export function interfaceV4(name: string): string | null {
  return networkInterfaces()[name]?.find((a) => a.family === 'IPv4')?.address ?? null
}

/** The first global IPv6 address of an interface, or null. */
export function interfaceV6(name: string): string | null {
  return networkInterfaces()[name]?.find((a) => a.family === 'IPv6' && isGlobalV6(a.address))?.address ?? null
}

/** Every IPv4 address of this network namespace's interfaces. */
function localV4(): string[] {
  return Object.values(networkInterfaces()).flatMap((as) => (as ?? []).filter((a) => a.family === 'IPv4').map((a) => a.address))
}

/** Every IPv4 address of one interface. */
function interfaceV4All(name: string): string[] {
  return (networkInterfaces()[name] ?? []).filter((a) => a.family === 'IPv4').map((a) => a.address)
}

/**
 * The IPv4 destinations forwards match. The announced address, and, when it is not an address of
 * this host (a cloud VM behind 1:1 NAT, wg-easy on a Docker bridge: the packets arrive for the
 * interface's own private address), the addresses of public_interface too. Pure.
 */
export function forwardedV4(announced: string, local: readonly string[], onPublicInterface: readonly string[]): string[] {
  return local.includes(announced) ? [announced] : [...new Set([announced, ...onPublicInterface])]
}

export interface PublicAddresses {
  /** What NAT-PMP, PCP and UPnP report, and what the page shows. */
  readonly v4: string
  readonly v6: string | null
  /** The IPv4 destinations the DNAT matches (v4 first; see forwardedV4). */
  readonly matchV4: readonly string[]
}

/**
 * The public addresses forwards are for: configured, or read off public_interface. IPv6 only
 * when the WireGuard interface has an IPv6 prefix. Throws WGPMP_ADDRESS_UNKNOWN when one is needed
 * and cannot be found. `over` (tests) is taken as is.
 */
export function publicAddresses(
  c: { public_interface: string; public_address_v4?: string | undefined; public_address_v6?: string | undefined },
  wg6: Cidr6 | null,
  over: { v4?: string | undefined; v6?: string | undefined } = {},
): PublicAddresses {
  const v4 = over.v4 ?? c.public_address_v4 ?? interfaceV4(c.public_interface)
  if (!v4) throw new WgpmpError('WGPMP_ADDRESS_UNKNOWN', `public_interface ${c.public_interface} has no IPv4 address; set public_address_v4`)
  const matchV4 = over.v4 !== undefined || c.public_address_v4 === undefined ? [v4] : forwardedV4(v4, localV4(), interfaceV4All(c.public_interface))
  if (wg6 === null) return { v4, v6: null, matchV4 }
  const v6 = over.v6 ?? c.public_address_v6 ?? interfaceV6(c.public_interface)
  if (!v6)
    throw new WgpmpError(
      'WGPMP_ADDRESS_UNKNOWN',
      `public_interface ${c.public_interface} has no global IPv6 address; set public_address_v6 (or remove wg_address_v6)`,
    )
  return { v4, v6: canonicalAddress(v6), matchV4 }
}

/** The WireGuard listen port (never granted), or none if `wg` cannot tell. */
export async function wgListenPort(exec: Exec, ifname: string, log: Logger): Promise<number[]> {
  try {
    const r = await exec('wg', ['show', ifname, 'listen-port'])
    const p = Number(r.stdout.trim())
    if (r.exitCode === 0 && Number.isInteger(p) && p > 0) return [p]
    log.warn({ ifname, stderr: r.stderr }, 'cannot read the WireGuard listen port; it is not reserved')
  } catch (err) {
    log.warn({ err, ifname }, 'cannot run wg; the WireGuard listen port is not reserved')
  }
  return []
}
