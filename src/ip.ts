/** IPv4 and IPv6 parsing and prefix checks, without dependencies. Parsers return null on bad input. */
import { formatIpv6, parseIpv6 } from './protocol/pcp.js'

/** "10.8.0.2" -> 0x0a080002 (unsigned). Strict dotted quad: no leading zeros, each part 0..255. */
export function parseIPv4(s: string): number | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s)
  if (!m) return null
  let n = 0
  for (let i = 1; i <= 4; i++) {
    const part = m[i]!
    if (part.length > 1 && part.startsWith('0')) return null
    const v = Number(part)
    if (v > 255) return null
    n = n * 256 + v
  }
  return n
}

export const formatIPv4 = (n: number): string => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.')

export interface Cidr4 {
  readonly address: string
  readonly addr: number
  readonly prefix: number
  readonly network: number
  readonly mask: number
}

/** "10.8.0.1/24" -> address 10.8.0.1, network 10.8.0.0, prefix 24. A bare address is a /32. */
export function parseCidr4(s: string): Cidr4 | null {
  const [a, p, ...rest] = s.split('/')
  if (a === undefined || rest.length > 0) return null
  const addr = parseIPv4(a)
  if (addr === null) return null
  const prefix = p === undefined ? 32 : /^\d{1,2}$/.test(p) ? Number(p) : NaN
  if (!(prefix >= 0 && prefix <= 32)) return null
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0
  return { address: a, addr, prefix, network: (addr & mask) >>> 0, mask }
}

export const inCidr4 = (c: Cidr4, ip: number): boolean => ((ip & c.mask) >>> 0) === c.network

/** Strips the IPv4-mapped IPv6 prefix that dual-stack sockets report ("::ffff:10.8.0.2"). */
export const unmapV4 = (s: string): string => (s.startsWith('::ffff:') ? s.slice(7) : s)

/**
 * The canonical text of an IPv4 or IPv6 address (RFC 5952 for IPv6, so "FD42:42:0::2" and
 * "fd42:42::2" are one client), or null if it is neither.
 */
export function canonicalAddress(s: string): string | null {
  if (s.includes(':')) {
    const b = parseIpv6(s)
    return b === null ? null : formatIpv6(b)
  }
  return parseIPv4(s) === null ? null : s
}

export interface Cidr6 {
  readonly address: string
  readonly bytes: Uint8Array
  readonly prefix: number
}

/** "fd42:42::1/64" -> address fd42:42::1, prefix 64. A bare address is a /128. */
export function parseCidr6(s: string): Cidr6 | null {
  const [a, p, ...rest] = s.split('/')
  if (a === undefined || rest.length > 0) return null
  const bytes = parseIpv6(a)
  if (bytes === null) return null
  const prefix = p === undefined ? 128 : /^\d{1,3}$/.test(p) ? Number(p) : NaN
  if (!(prefix >= 0 && prefix <= 128)) return null
  return { address: formatIpv6(bytes), bytes, prefix }
}

/** "2001:db8:200::1/64" -> "2001:db8:200::/64": the prefix with host bits cleared (nftables wants it so). */
export function cidr6Network(c: Cidr6): string {
  const b = new Uint8Array(c.bytes)
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, c.prefix - i * 8))
    b[i] = (b[i] ?? 0) & ((0xff << (8 - keep)) & 0xff)
  }
  return `${formatIpv6(b)}/${c.prefix}`
}

/** Unique-local (fc00::/7, RFC 4193): a client behind the server's address (NAT66) rather than a global one. */
export function isUniqueLocal(address: string): boolean {
  const b = parseIpv6(address)
  return b !== null && ((b[0] ?? 0) & 0xfe) === 0xfc
}

/** A global unicast IPv6 address (2000::/3), the kind a public interface reports. */
export function isGlobalV6(address: string): boolean {
  const b = parseIpv6(address)
  return b !== null && ((b[0] ?? 0) & 0xe0) === 0x20
}
