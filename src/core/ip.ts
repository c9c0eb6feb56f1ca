/** IPv4 and IPv6 parsing and prefix checks: the one IP module, importing nothing. Parsers return null on bad input. */

const view = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength)

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

export const inCidr4 = (c: Cidr4, ip: number): boolean => (ip & c.mask) >>> 0 === c.network

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

const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/

/** Dotted-quad IPv4 ("10.8.0.2") as 4 bytes; null if invalid (the same strict rules as parseIPv4). */
export function parseIpv4(text: string): Uint8Array | null {
  const n = parseIPv4(text)
  if (n === null) return null
  const out = new Uint8Array(4)
  view(out).setUint32(0, n)
  return out
}

/**
 * Parses IPv6 text (RFC 4291 §2.2: `::` compression, optional dotted IPv4 tail) into 16 bytes.
 * Returns null if invalid. Zone ids (`%eth0`) and brackets are not accepted.
 */
export function parseIpv6(text: string): Uint8Array | null {
  if (text.length === 0 || text.length > 45) return null
  const halves = text.split('::')
  if (halves.length > 2) return null
  const groupsOf = (s: string): string[] => (s === '' ? [] : s.split(':'))
  const head = groupsOf(halves[0] ?? '')
  const tail = halves.length === 2 ? groupsOf(halves[1] ?? '') : []
  const words: number[] = []
  const all = [...head, ...tail]
  const headWords: number[] = []
  const tailWords: number[] = []
  for (let i = 0; i < all.length; i++) {
    const g = all[i] ?? ''
    const target = i < head.length ? headWords : tailWords
    // A dotted IPv4 tail must end the address: last group, and not followed by `::`.
    const last = i === all.length - 1 && (halves.length === 1 || i >= head.length)
    if (last && g.includes('.')) {
      const v4 = parseIpv4(g)
      if (v4 === null) return null
      const d = view(v4)
      target.push(d.getUint16(0), d.getUint16(2))
    } else if (HEX_GROUP.test(g)) {
      target.push(parseInt(g, 16))
    } else {
      return null
    }
  }
  const explicit = headWords.length + tailWords.length
  if (halves.length === 2) {
    if (explicit > 7) return null // `::` stands for at least one zero group
    words.push(...headWords, ...new Array<number>(8 - explicit).fill(0), ...tailWords)
  } else {
    if (explicit !== 8) return null
    words.push(...headWords)
  }
  const out = new Uint8Array(16)
  const v = view(out)
  words.forEach((w, i) => v.setUint16(i * 2, w))
  return out
}

/** True if the 16 bytes are IPv4-mapped: all 96 prefix bits checked, as §5 requires. */
export function isIpv4Mapped(addr: Uint8Array): boolean {
  if (addr.byteLength !== 16) return false
  const v = view(addr)
  return v.getUint32(0) === 0 && v.getUint32(4) === 0 && v.getUint32(8) === 0xffff
}

/** `10.8.0.2` → the 16 bytes of `::ffff:10.8.0.2`; null if the text is not IPv4. */
export function ipv4ToMapped(ip: string): Uint8Array | null {
  const v4 = parseIpv4(ip)
  if (v4 === null) return null
  const out = new Uint8Array(16)
  view(out).setUint32(8, 0xffff)
  out.set(v4, 12)
  return out
}

/** The IPv4 text of an IPv4-mapped address; null if the 16 bytes are not IPv4-mapped. */
export function mappedToIpv4(addr: Uint8Array): string | null {
  if (!isIpv4Mapped(addr)) return null
  const v = view(addr)
  return `${v.getUint8(12)}.${v.getUint8(13)}.${v.getUint8(14)}.${v.getUint8(15)}`
}

/**
 * Formats 16 bytes as canonical IPv6 text (RFC 5952: lower case, no leading zeros, the longest
 * run of two or more zero groups compressed, the first on a tie; IPv4-mapped as ::ffff:a.b.c.d).
 * Returns '' if the input is not 16 bytes.
 */
export function formatIpv6(addr: Uint8Array): string {
  if (addr.byteLength !== 16) return ''
  const v4 = mappedToIpv4(addr)
  if (v4 !== null) return `::ffff:${v4}`
  const v = view(addr)
  const words = Array.from({ length: 8 }, (_, i) => v.getUint16(i * 2))
  let bestStart = -1
  let bestLen = 0
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && words[j] === 0) j++
    if (j - i > bestLen) {
      bestStart = i
      bestLen = j - i
    }
    i = j
  }
  const hex = (ws: number[]): string => ws.map((w) => w.toString(16)).join(':')
  if (bestLen < 2) return hex(words)
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLen))}`
}
