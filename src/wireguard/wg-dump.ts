/**
 * Pure parser of `wg show <interface> dump` (wireguard-tools, src/show.c `dump_print`): tab-separated,
 * one line for the interface, then one line per peer. No I/O, no clock; never throws.
 *
 * Interface line: private-key  public-key  listen-port  fwmark
 * Peer line:      public-key  preshared-key  endpoint  allowed-ips  latest-handshake  rx  tx  persistent-keepalive
 *
 * Absent values print as "(none)" (keys, endpoint, allowed IPs), "off" (fwmark, keepalive) or 0
 * (handshake never happened). Secrets are not kept: the result says whether a private or preshared
 * key is set, never what it is, so a parsed dump is safe to log or serve.
 */

export interface WgInterfaceInfo {
  readonly hasPrivateKey: boolean
  /** Base64 public key, or null when no private key is set. */
  readonly publicKey: string | null
  /** 0 when the interface has no port yet. */
  readonly listenPort: number
  /** null when "off". */
  readonly fwmark: number | null
}

export interface WgPeerInfo {
  /** Base64 (44 characters) Curve25519 public key, as wg prints it. */
  readonly publicKey: string
  readonly hasPresharedKey: boolean
  /** "203.0.113.7:51820" or "[2001:db8::1]:51820"; null before the peer was ever heard from. */
  readonly endpoint: string | null
  /** CIDRs as printed ("10.8.0.2/32", "fd00::2/128"); empty for "(none)". */
  readonly allowedIps: readonly string[]
  /** Unix seconds of the latest handshake; 0 = never. */
  readonly latestHandshake: number
  readonly rxBytes: number
  readonly txBytes: number
  /** Seconds; null when "off". */
  readonly persistentKeepalive: number | null
}

export interface WgDump {
  readonly iface: WgInterfaceInfo
  readonly peers: readonly WgPeerInfo[]
}

export type WgDumpResult =
  | { readonly ok: true; readonly value: WgDump }
  /** line is 1-based; the message names the field. */
  | { readonly ok: false; readonly line: number; readonly error: string }

/** A WireGuard key: 32 bytes in padded base64 (the last character before '=' carries 4 zero bits). */
const KEY = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/
const UINT = /^(0|[1-9][0-9]*)$/

const uint = (s: string, max: number): number | null => {
  if (!UINT.test(s)) return null
  const n = Number(s)
  return Number.isSafeInteger(n) && n <= max ? n : null
}

/** True for a syntactically valid WireGuard base64 key. */
export const isWgKey = (s: string): boolean => KEY.test(s)

/**
 * Parses the whole output of `wg show <if> dump`. Trailing newlines and a final empty line are
 * accepted; anything else malformed (wrong field count, bad key, bad number) is an error naming the
 * line, and no partial result is returned. Empty input is an error (wg always prints the interface line).
 */
export function parseWgDump(text: string): WgDumpResult {
  const lines = text.replace(/\r?\n$/, '').split(/\r?\n/)
  const first = lines[0]
  if (first === undefined || first === '') return { ok: false, line: 1, error: 'empty output (expected the interface line)' }
  const iface = parseInterfaceLine(first)
  if (typeof iface === 'string') return { ok: false, line: 1, error: iface }
  const peers: WgPeerInfo[] = []
  for (let i = 1; i < lines.length; i++) {
    const p = parsePeerLine(lines[i]!)
    if (typeof p === 'string') return { ok: false, line: i + 1, error: p }
    peers.push(p)
  }
  return { ok: true, value: { iface, peers } }
}

function parseInterfaceLine(line: string): WgInterfaceInfo | string {
  const f = line.split('\t')
  if (f.length !== 4) return `interface line: expected 4 tab-separated fields, got ${f.length}`
  const [priv, pub, port, mark] = f as [string, string, string, string]
  if (priv !== '(none)' && !KEY.test(priv)) return 'interface line: private key is not a WireGuard key'
  if (pub !== '(none)' && !KEY.test(pub)) return 'interface line: public key is not a WireGuard key'
  const listenPort = uint(port, 65535)
  if (listenPort === null) return `interface line: listen port ${JSON.stringify(port)} is not 0..65535`
  let fwmark: number | null = null
  if (mark !== 'off') {
    fwmark = /^0x[0-9a-f]{1,8}$/i.test(mark) ? Number.parseInt(mark.slice(2), 16) : uint(mark, 0xffffffff)
    if (fwmark === null) return `interface line: fwmark ${JSON.stringify(mark)} is not "off" or a 32-bit number`
  }
  return { hasPrivateKey: priv !== '(none)', publicKey: pub === '(none)' ? null : pub, listenPort, fwmark }
}

function parsePeerLine(line: string): WgPeerInfo | string {
  const f = line.split('\t')
  if (f.length !== 8) return `peer line: expected 8 tab-separated fields, got ${f.length}`
  const [pub, psk, endpoint, allowed, hs, rx, tx, ka] = f as [string, string, string, string, string, string, string, string]
  if (!KEY.test(pub)) return 'peer line: public key is not a WireGuard key'
  if (psk !== '(none)' && !KEY.test(psk)) return 'peer line: preshared key is not a WireGuard key'
  if (endpoint !== '(none)' && !/^(\[[0-9A-Fa-f:.%\w]+\]|[0-9.]+):[0-9]{1,5}$/.test(endpoint)) {
    return `peer line: endpoint ${JSON.stringify(endpoint)} is not address:port`
  }
  const allowedIps = allowed === '(none)' ? [] : allowed.split(',')
  if (allowedIps.some((c) => !/^[0-9A-Fa-f:.]+\/[0-9]{1,3}$/.test(c))) return `peer line: allowed IPs ${JSON.stringify(allowed)} are not CIDRs`
  const latestHandshake = uint(hs, Number.MAX_SAFE_INTEGER)
  if (latestHandshake === null) return `peer line: latest handshake ${JSON.stringify(hs)} is not a number`
  // Counters are u64 in the kernel; above 2^53 bytes (8 PiB) a JS number loses precision, which is harmless here.
  const rxBytes = UINT.test(rx) ? Number(rx) : null
  const txBytes = UINT.test(tx) ? Number(tx) : null
  if (rxBytes === null || txBytes === null) return 'peer line: transfer counters are not numbers'
  let persistentKeepalive: number | null = null
  if (ka !== 'off') {
    persistentKeepalive = uint(ka, 65535)
    if (persistentKeepalive === null) return `peer line: persistent keepalive ${JSON.stringify(ka)} is not "off" or 1..65535`
  }
  return {
    publicKey: pub,
    hasPresharedKey: psk !== '(none)',
    endpoint: endpoint === '(none)' ? null : endpoint,
    allowedIps,
    latestHandshake,
    rxBytes,
    txBytes,
    persistentKeepalive,
  }
}
