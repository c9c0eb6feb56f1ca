/**
 * Pure PCP (RFC 6887) codec: request decoding, response and error-reply encoding, and the small
 * 16-byte address helpers PCP needs (IPv4 travels as IPv4-mapped IPv6, §5). No I/O, no clock, no
 * logging: the epoch is always passed in. Decoding never throws, on any input.
 *
 * The codec checks syntax only (lengths, versions, opcodes, option framing). Policy stays with the
 * daemon: whether the client address matches the UDP source (ADDRESS_MISMATCH, §8.2), whether a
 * THIRD_PARTY request is allowed, what PREFER_FAILURE and FILTER mean for the allocation, lifetime
 * clamping, and answering PEER with UNSUPP_OPCODE. For those it gets the parsed options and
 * `pcpErrorReplyFor`, which builds the RFC 6887 §8.3 error reply from the request bytes.
 */
import { formatIpv6, ipv4ToMapped, mappedToIpv4, parseIpv6 } from '../core/ip.js'
import {
  NATPMP_VERSION,
  PCP_FILTER_MAX_PREFIX,
  PCP_OPCODE_MASK,
  PCP_OPTION_OPTIONAL_MIN,
  PCP_SHORT_LIFETIME_RESULTS,
  PCP_VERSION,
  PcpErrorLifetime,
  PcpLen,
  PcpOpcode,
  PcpOptionCode,
  PcpResult,
  RESPONSE_BIT,
} from './constants.js'

// ------------------------------------------------------------------------------------------------
// Types
// ------------------------------------------------------------------------------------------------

/** One option as it appears on the wire (§7.3): `data` excludes the padding. */
export interface PcpOption {
  readonly code: number
  readonly data: Uint8Array
}

/** MAP opcode-specific request data (§11.1). */
export interface PcpMapData {
  /** 12 bytes; the client's mapping nonce, echoed in every response. */
  readonly nonce: Uint8Array
  /** IANA protocol number; 0 means "all protocols" (then internalPort is 0). */
  readonly protocol: number
  /** 0 means "all ports" (only with protocol 0, or in a delete). */
  readonly internalPort: number
  /** A hint; 0 means "no preference". */
  readonly suggestedExternalPort: number
  /** Text form: IPv4 for an IPv4-mapped address (`0.0.0.0` for libtorrent's `::ffff:0.0.0.0`). */
  readonly suggestedExternalAddress: string
  /** The 16 raw bytes of the suggested external address. */
  readonly suggestedExternalAddressRaw: Uint8Array
}

/** PEER opcode-specific request data (§12.1): MAP's fields plus the remote peer. */
export interface PcpPeerData extends PcpMapData {
  readonly remotePeerPort: number
  readonly remotePeerAddress: string
  readonly remotePeerAddressRaw: Uint8Array
}

/** A parsed FILTER option (§13.3). Prefix length 0 means "remove all filters". */
export interface PcpFilter {
  readonly prefixLength: number
  readonly remotePeerPort: number
  readonly remotePeerAddress: string
  readonly remotePeerAddressRaw: Uint8Array
}

/** A parsed THIRD_PARTY option (§13.1): the internal address the request is made for. */
export interface PcpThirdParty {
  readonly address: string
  readonly addressRaw: Uint8Array
}

interface PcpRequestCommon {
  /** Requested lifetime in seconds, unclamped (§7.1). 0 means delete (MAP, PEER). */
  readonly lifetimeSeconds: number
  /** The PCP client's IP address field as text (IPv4 when IPv4-mapped). Compare with the source. */
  readonly clientAddress: string
  /** The 16 raw bytes of the client address field. */
  readonly clientAddressRaw: Uint8Array
  /** Options the codec understood (THIRD_PARTY, PREFER_FAILURE, FILTER), in wire order. */
  readonly options: readonly PcpOption[]
  /** Set when a THIRD_PARTY option is present (at most one is accepted). */
  readonly thirdParty?: PcpThirdParty
  /** True when a PREFER_FAILURE option is present (MAP only, at most one). */
  readonly preferFailure: boolean
  /** FILTER options in wire order (MAP only; may repeat). */
  readonly filters: readonly PcpFilter[]
  /** Codes of optional-to-process options (128-255) we do not know and skipped (§7.3). */
  readonly ignoredOptionCodes: readonly number[]
  /** A copy of the whole request; pass it to `pcpErrorReplyFor` to refuse the request. */
  readonly raw: Uint8Array
}

/** A valid PCP version 2 request (ANNOUNCE, MAP or PEER). */
export type PcpRequest =
  | (PcpRequestCommon & { readonly opcode: typeof PcpOpcode.Announce })
  | (PcpRequestCommon & { readonly opcode: typeof PcpOpcode.Map; readonly map: PcpMapData })
  | (PcpRequestCommon & { readonly opcode: typeof PcpOpcode.Peer; readonly peer: PcpPeerData })

/** Why a packet was not decoded; stable strings for debug logs and metrics. */
export type PcpRejectReason =
  | 'too-short' // < 2 bytes: dropped (§8.3)
  | 'response' // R bit set: dropped (§8.3)
  | 'not-pcp' // version 0 is NAT-PMP, not ours: dropped
  | 'unsupported-version' // §9
  | 'bad-length' // < 24, > 1100 or not a multiple of 4 (§7, §8.3)
  | 'unsupported-opcode' // §7.4
  | 'truncated-opcode-data' // MAP < 60 or PEER < 80 bytes (§11.1, §12.1)
  | 'protocol-zero-with-port' // §11.1, §12.1
  | 'option-overrun' // option header or data runs past the end (§7.3)
  | 'option-length' // a known option with the wrong length (§13)
  | 'option-repeated' // THIRD_PARTY or PREFER_FAILURE twice (§7.3, §13)
  | 'option-not-for-opcode' // e.g. FILTER in PEER (§7.3, §13)
  | 'option-filter-prefix' // FILTER prefix length > 128 (§13.3)
  | 'unsupported-option' // unknown mandatory option, code < 128 (§7.3)

/**
 * Decoding outcome. On failure, `reply` holds the exact bytes to send back (already a valid PCP
 * error response), or null when the packet must be dropped silently; `result` is the PCP result
 * code in the reply (null when dropped).
 */
export type PcpDecoded =
  | { readonly ok: true; readonly value: PcpRequest }
  | {
      readonly ok: false
      readonly reason: PcpRejectReason
      readonly result: PcpResult | null
      readonly reply: Uint8Array | null
    }

// ------------------------------------------------------------------------------------------------
// Small byte helpers
// ------------------------------------------------------------------------------------------------

const view = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength)

/** A fresh, unshared copy (Buffer#slice shares memory, so never use it for this). */
const copy = (b: Uint8Array, start: number, end: number): Uint8Array => new Uint8Array(b.subarray(start, end))

const roundUp4 = (n: number): number => Math.ceil(n / PcpLen.Alignment) * PcpLen.Alignment

/** Writes the 24-byte response header (§7.2). Bytes 12-23 (reserved) are zeroed. */
function writeResponseHeader(out: Uint8Array, opcode: number, result: number, lifetimeSeconds: number, epochSeconds: number): void {
  const v = view(out)
  v.setUint8(0, PCP_VERSION)
  v.setUint8(1, RESPONSE_BIT | (opcode & PCP_OPCODE_MASK))
  v.setUint8(2, 0)
  v.setUint8(3, result)
  v.setUint32(4, lifetimeSeconds >>> 0)
  v.setUint32(8, epochSeconds >>> 0)
  out.fill(0, 12, PcpLen.Header)
}

// ------------------------------------------------------------------------------------------------
// Addresses (§5: IPv4 is carried as an IPv4-mapped IPv6 address, ::ffff:a.b.c.d)
// ------------------------------------------------------------------------------------------------

/** Text for a PCP address field: IPv4 text if IPv4-mapped, else canonical IPv6. */
export function formatPcpAddress(addr: Uint8Array): string {
  return mappedToIpv4(addr) ?? formatIpv6(addr)
}

/** PCP address field bytes for IPv4 text (mapped) or IPv6 text; null if neither. */
export function parsePcpAddress(text: string): Uint8Array | null {
  return ipv4ToMapped(text) ?? parseIpv6(text)
}

/** Accepts address text or 16 raw bytes; throws RangeError otherwise (encoders only). */
function addressBytes(a: string | Uint8Array, what: string): Uint8Array {
  if (typeof a !== 'string') {
    if (a.byteLength !== PcpLen.Address) throw new RangeError(`${what}: expected ${PcpLen.Address} bytes, got ${a.byteLength}`)
    return a
  }
  const b = parsePcpAddress(a)
  if (b === null) throw new RangeError(`${what}: not an IPv4 or IPv6 address: ${JSON.stringify(a)}`)
  return b
}

// ------------------------------------------------------------------------------------------------
// Error replies (§7.2, §7.4, §8.3, §9)
// ------------------------------------------------------------------------------------------------

/**
 * Lifetime to put in an error response for `result` (§7.2, §7.4): PcpErrorLifetime.Short (30 s)
 * for the short-lifetime errors, PcpErrorLifetime.Long (1800 s) for every other error, 0 for
 * SUCCESS (not an error).
 */
export function pcpErrorLifetime(result: number): number {
  if (result === PcpResult.Success) return 0
  return PCP_SHORT_LIFETIME_RESULTS.has(result) ? PcpErrorLifetime.Short : PcpErrorLifetime.Long
}

/**
 * Builds the error response to a request (RFC 6887 §7.3, §8.3): a copy of the request's first
 * 1100 bytes, zero-padded to a multiple of 4 and to at least 24 bytes, with the header rewritten
 * as a response header (§7.2): version 2, R bit, same opcode, reserved 0, `result`, the lifetime
 * from `pcpErrorLifetime`, `epochSeconds`, and the 96 reserved bits zeroed (in a request those
 * bytes hold the client address, which a response header does not carry). Opcode data and options
 * are echoed untouched, so a MAP client finds its nonce.
 *
 * For a version other than 2, or for UNSUPP_VERSION, the reply is the 24-byte header alone (§9):
 * we cannot know the layout of a version we do not speak.
 *
 * Returns null (drop) for fewer than 2 bytes, a response (R bit set), or version 0 (NAT-PMP).
 * Throws RangeError if `result` is not 1-255 (a programming error).
 */
export function pcpErrorReplyFor(request: Uint8Array, result: number, epochSeconds: number): Uint8Array | null {
  if (!Number.isInteger(result) || result < 1 || result > 255) throw new RangeError(`not a PCP error result: ${result}`)
  if (request.byteLength < 2) return null
  const v = view(request)
  const version = v.getUint8(0)
  const rOpcode = v.getUint8(1)
  if ((rOpcode & RESPONSE_BIT) !== 0 || version === NATPMP_VERSION) return null
  const copyLen = version === PCP_VERSION && result !== PcpResult.UnsuppVersion ? Math.min(request.byteLength, PcpLen.MaxMessage) : 0
  const out = new Uint8Array(Math.max(PcpLen.Header, roundUp4(copyLen)))
  out.set(request.subarray(0, copyLen))
  writeResponseHeader(out, rOpcode & PCP_OPCODE_MASK, result, pcpErrorLifetime(result), epochSeconds)
  return out
}

// ------------------------------------------------------------------------------------------------
// Request decoding
// ------------------------------------------------------------------------------------------------

type Reject = Extract<PcpDecoded, { ok: false }>

const drop = (reason: PcpRejectReason): Reject => ({ ok: false, reason, result: null, reply: null })

function refuse(buf: Uint8Array, result: PcpResult, reason: PcpRejectReason, epochSeconds: number): Reject {
  return { ok: false, reason, result, reply: pcpErrorReplyFor(buf, result, epochSeconds) }
}

interface ParsedOptions {
  options: PcpOption[]
  thirdParty?: PcpThirdParty
  preferFailure: boolean
  filters: PcpFilter[]
  ignoredOptionCodes: number[]
}

type OptionsOutcome = { ok: true; value: ParsedOptions } | { ok: false; result: PcpResult; reason: PcpRejectReason }

/**
 * Walks the options in [start, end) in wire order (§7.3). The first problem wins: an overrun or a
 * wrong length, a repeat of a once-only option, or a known option on an opcode it is not defined
 * for gives MALFORMED_OPTION; an unknown mandatory code (< 128) gives UNSUPP_OPTION; unknown
 * optional codes are skipped.
 */
function parseOptions(buf: Uint8Array, v: DataView, start: number, end: number, opcode: PcpOpcode): OptionsOutcome {
  const out: ParsedOptions = { options: [], preferFailure: false, filters: [], ignoredOptionCodes: [] }
  const malformed = (reason: PcpRejectReason): OptionsOutcome => ({ ok: false, result: PcpResult.MalformedOption, reason })
  let off = start
  while (off < end) {
    if (end - off < PcpLen.OptionHeader) return malformed('option-overrun')
    const code = v.getUint8(off)
    const length = v.getUint16(off + 2)
    const dataStart = off + PcpLen.OptionHeader
    // §7.3: data is padded to a multiple of 4; the padding must be there too.
    if (roundUp4(length) > end - dataStart) return malformed('option-overrun')
    const data = copy(buf, dataStart, dataStart + length)
    off = dataStart + roundUp4(length)

    switch (code) {
      case PcpOptionCode.ThirdParty: {
        // §13.1: MAP and PEER, at most once, one 16-byte address.
        if (length !== PcpLen.ThirdPartyData) return malformed('option-length')
        if (opcode !== PcpOpcode.Map && opcode !== PcpOpcode.Peer) return malformed('option-not-for-opcode')
        if (out.thirdParty !== undefined) return malformed('option-repeated')
        out.thirdParty = { address: formatPcpAddress(data), addressRaw: data }
        break
      }
      case PcpOptionCode.PreferFailure: {
        // §13.2: MAP only, at most once, no data.
        if (length !== PcpLen.PreferFailureData) return malformed('option-length')
        if (opcode !== PcpOpcode.Map) return malformed('option-not-for-opcode')
        if (out.preferFailure) return malformed('option-repeated')
        out.preferFailure = true
        break
      }
      case PcpOptionCode.Filter: {
        // §13.3: MAP only, may repeat; reserved(8) prefix(8) port(16) address(128).
        if (length !== PcpLen.FilterData) return malformed('option-length')
        if (opcode !== PcpOpcode.Map) return malformed('option-not-for-opcode')
        const prefixLength = v.getUint8(dataStart + 1)
        if (prefixLength > PCP_FILTER_MAX_PREFIX) return malformed('option-filter-prefix')
        const addressRaw = copy(buf, dataStart + 4, dataStart + 4 + PcpLen.Address)
        out.filters.push({
          prefixLength,
          remotePeerPort: v.getUint16(dataStart + 2),
          remotePeerAddress: formatPcpAddress(addressRaw),
          remotePeerAddressRaw: addressRaw,
        })
        break
      }
      default: {
        if (code < PCP_OPTION_OPTIONAL_MIN) return { ok: false, result: PcpResult.UnsuppOption, reason: 'unsupported-option' }
        out.ignoredOptionCodes.push(code)
        continue // not kept in `options`: we did not process it, so it must not be echoed
      }
    }
    out.options.push({ code, data })
  }
  return { ok: true, value: out }
}

/** MAP and PEER share their first 36 bytes of opcode data (§11.1, §12.1). */
function readMapData(buf: Uint8Array, v: DataView, at: number): PcpMapData {
  const suggestedExternalAddressRaw = copy(buf, at + 20, at + 36)
  return {
    nonce: copy(buf, at, at + PcpLen.Nonce),
    protocol: v.getUint8(at + 12),
    internalPort: v.getUint16(at + 16),
    suggestedExternalPort: v.getUint16(at + 18),
    suggestedExternalAddress: formatPcpAddress(suggestedExternalAddressRaw),
    suggestedExternalAddressRaw,
  }
}

function readPeerData(buf: Uint8Array, v: DataView, at: number): PcpPeerData {
  const remotePeerAddressRaw = copy(buf, at + 40, at + 56)
  return {
    ...readMapData(buf, v, at),
    remotePeerPort: v.getUint16(at + 36),
    remotePeerAddress: formatPcpAddress(remotePeerAddressRaw),
    remotePeerAddressRaw,
  }
}

/**
 * Decodes one PCP request datagram. Never throws, whatever the bytes. Checks, in RFC 6887 §8.3
 * order, the first failure deciding:
 *
 * 1. fewer than 2 bytes → drop; R bit set (a response) → drop; version 0 → drop (NAT-PMP's job);
 * 2. version ≠ 2 → UNSUPP_VERSION, 24-byte header-only reply carrying version 2 (§9);
 * 3. < 24 bytes, > 1100 bytes, or not a multiple of 4 → MALFORMED_REQUEST (the reply copies at
 *    most 1100 bytes, padded);
 * 4. opcode other than ANNOUNCE/MAP/PEER → UNSUPP_OPCODE;
 * 5. MAP < 60 or PEER < 80 bytes → MALFORMED_REQUEST; protocol 0 with internal port ≠ 0 →
 *    MALFORMED_REQUEST (§11.1, §12.1);
 * 6. options: see parseOptions (MALFORMED_OPTION / UNSUPP_OPTION; unknown optional ones skipped).
 *
 * `epochSeconds` only feeds the error replies. Every error reply is `pcpErrorReplyFor(buf, …)`.
 * The datagram must be read whole: a socket buffer of exactly 1100 bytes would hide oversize ones.
 */
export function decodePcpRequest(buf: Uint8Array, epochSeconds: number): PcpDecoded {
  const len = buf.byteLength
  if (len < 2) return drop('too-short')
  const v = view(buf)
  const version = v.getUint8(0)
  const rOpcode = v.getUint8(1)
  if ((rOpcode & RESPONSE_BIT) !== 0) return drop('response')
  if (version === NATPMP_VERSION) return drop('not-pcp')
  if (version !== PCP_VERSION) return refuse(buf, PcpResult.UnsuppVersion, 'unsupported-version', epochSeconds)
  if (len < PcpLen.Header || len > PcpLen.MaxMessage || len % PcpLen.Alignment !== 0) {
    return refuse(buf, PcpResult.MalformedRequest, 'bad-length', epochSeconds)
  }
  const opcode = rOpcode & PCP_OPCODE_MASK
  if (opcode !== PcpOpcode.Announce && opcode !== PcpOpcode.Map && opcode !== PcpOpcode.Peer) {
    return refuse(buf, PcpResult.UnsuppOpcode, 'unsupported-opcode', epochSeconds)
  }

  let bodyLen = 0
  let map: PcpMapData | undefined
  let peer: PcpPeerData | undefined
  if (opcode === PcpOpcode.Map || opcode === PcpOpcode.Peer) {
    bodyLen = opcode === PcpOpcode.Map ? PcpLen.MapBody : PcpLen.PeerBody
    if (len < PcpLen.Header + bodyLen) return refuse(buf, PcpResult.MalformedRequest, 'truncated-opcode-data', epochSeconds)
    if (opcode === PcpOpcode.Map) map = readMapData(buf, v, PcpLen.Header)
    else peer = readPeerData(buf, v, PcpLen.Header)
    const data = map ?? peer
    if (data !== undefined && data.protocol === 0 && data.internalPort !== 0) {
      return refuse(buf, PcpResult.MalformedRequest, 'protocol-zero-with-port', epochSeconds)
    }
  }

  const parsed = parseOptions(buf, v, PcpLen.Header + bodyLen, len, opcode)
  if (!parsed.ok) return refuse(buf, parsed.result, parsed.reason, epochSeconds)

  const clientAddressRaw = copy(buf, 8, 24)
  const common: PcpRequestCommon = {
    lifetimeSeconds: v.getUint32(4),
    clientAddress: formatPcpAddress(clientAddressRaw),
    clientAddressRaw,
    ...parsed.value,
    raw: copy(buf, 0, len),
  }
  if (map !== undefined) return { ok: true, value: { ...common, opcode: PcpOpcode.Map, map } }
  if (peer !== undefined) return { ok: true, value: { ...common, opcode: PcpOpcode.Peer, peer } }
  return { ok: true, value: { ...common, opcode: PcpOpcode.Announce } }
}

// ------------------------------------------------------------------------------------------------
// Response encoding
// ------------------------------------------------------------------------------------------------

/** A PCP response to encode (§7.2). Epoch and lifetime are passed in; nothing reads a clock. */
export interface PcpResponse {
  readonly opcode: number
  readonly result: number
  /** Granted lifetime on success; on error use `pcpErrorLifetime(result)`. */
  readonly lifetimeSeconds: number
  readonly epochSeconds: number
  /** Opcode-specific data, a multiple of 4 bytes (MAP: `encodeMapResponseBody`, 36 bytes). */
  readonly body?: Uint8Array
  /** Options to append, each padded to a multiple of 4 (§7.3). */
  readonly options?: readonly PcpOption[]
}

function encodeOptions(options: readonly PcpOption[]): Uint8Array {
  const size = options.reduce((n, o) => n + PcpLen.OptionHeader + roundUp4(o.data.byteLength), 0)
  const out = new Uint8Array(size)
  const v = view(out)
  let off = 0
  for (const o of options) {
    if (!Number.isInteger(o.code) || o.code < 0 || o.code > 255) throw new RangeError(`bad PCP option code: ${o.code}`)
    if (o.data.byteLength > 0xffff) throw new RangeError(`PCP option ${o.code} data too long: ${o.data.byteLength}`)
    v.setUint8(off, o.code)
    v.setUint8(off + 1, 0)
    v.setUint16(off + 2, o.data.byteLength)
    out.set(o.data, off + PcpLen.OptionHeader)
    off += PcpLen.OptionHeader + roundUp4(o.data.byteLength)
  }
  return out
}

/**
 * Encodes a response: 24-byte header (§7.2), then `body`, then `options`. Throws RangeError on a
 * programming error: opcode not 0-127, result not 0-255, a body that is not a multiple of 4, or a
 * total above 1100 bytes (§7: the daemon must answer with an error instead, §7.3).
 */
export function encodePcpResponse(r: PcpResponse): Uint8Array {
  if (!Number.isInteger(r.opcode) || r.opcode < 0 || r.opcode > PCP_OPCODE_MASK) throw new RangeError(`bad PCP opcode: ${r.opcode}`)
  if (!Number.isInteger(r.result) || r.result < 0 || r.result > 255) throw new RangeError(`bad PCP result: ${r.result}`)
  const body = r.body ?? new Uint8Array(0)
  if (body.byteLength % PcpLen.Alignment !== 0) throw new RangeError(`PCP body length ${body.byteLength} is not a multiple of 4`)
  const opts = encodeOptions(r.options ?? [])
  const total = PcpLen.Header + body.byteLength + opts.byteLength
  if (total > PcpLen.MaxMessage) throw new RangeError(`PCP response of ${total} bytes exceeds ${PcpLen.MaxMessage}`)
  const out = new Uint8Array(total)
  writeResponseHeader(out, r.opcode, r.result, r.lifetimeSeconds, r.epochSeconds)
  out.set(body, PcpLen.Header)
  out.set(opts, PcpLen.Header + body.byteLength)
  return out
}

/** Fields of the MAP response opcode data (§11.2). */
export interface PcpMapResponseBody {
  /** The request's 12-byte nonce, echoed. */
  readonly nonce: Uint8Array
  readonly protocol: number
  /** The request's internal port, echoed. */
  readonly internalPort: number
  readonly assignedExternalPort: number
  /** IPv4 text (sent IPv4-mapped), IPv6 text, or 16 raw bytes. */
  readonly assignedExternalAddress: string | Uint8Array
}

/**
 * The 36-byte MAP response body (§11.2): nonce, protocol, 3 reserved bytes, internal port,
 * assigned external port, assigned external address. Throws RangeError on a nonce that is not
 * 12 bytes or an address that does not parse.
 */
export function encodeMapResponseBody(b: PcpMapResponseBody): Uint8Array {
  if (b.nonce.byteLength !== PcpLen.Nonce) throw new RangeError(`PCP nonce must be ${PcpLen.Nonce} bytes, got ${b.nonce.byteLength}`)
  const out = new Uint8Array(PcpLen.MapBody)
  const v = view(out)
  out.set(b.nonce, 0)
  v.setUint8(12, b.protocol)
  v.setUint16(16, b.internalPort)
  v.setUint16(18, b.assignedExternalPort)
  out.set(addressBytes(b.assignedExternalAddress, 'assignedExternalAddress'), 20)
  return out
}

/** A whole MAP response (§11.2): `encodePcpResponse` with a MAP body. */
export function encodeMapResponse(r: Omit<PcpResponse, 'opcode' | 'body'> & PcpMapResponseBody): Uint8Array {
  const { nonce, protocol, internalPort, assignedExternalPort, assignedExternalAddress, ...rest } = r
  const body = encodeMapResponseBody({ nonce, protocol, internalPort, assignedExternalPort, assignedExternalAddress })
  return encodePcpResponse({ ...rest, opcode: PcpOpcode.Map, body })
}

/**
 * ANNOUNCE response, 24 bytes: SUCCESS, lifetime 0, the epoch (§14.1). The same bytes answer an
 * ANNOUNCE request and serve as the unsolicited announcement sent to 224.0.0.1 / ff02::1 port
 * 5350 on start-up or after state loss (§14.1.3).
 */
export function encodeAnnounceResponse(epochSeconds: number): Uint8Array {
  return encodePcpResponse({ opcode: PcpOpcode.Announce, result: PcpResult.Success, lifetimeSeconds: 0, epochSeconds })
}

// ------------------------------------------------------------------------------------------------
// Client side (tests, fake clients, integration tests): request encoding, response decoding
// ------------------------------------------------------------------------------------------------

/** MAP request fields for `encodePcpRequest`; addresses as text or 16 raw bytes. */
export interface PcpMapRequestFields {
  readonly nonce: Uint8Array
  readonly protocol: number
  readonly internalPort: number
  readonly suggestedExternalPort: number
  readonly suggestedExternalAddress: string | Uint8Array
}

export interface PcpPeerRequestFields extends PcpMapRequestFields {
  readonly remotePeerPort: number
  readonly remotePeerAddress: string | Uint8Array
}

export interface PcpRequestFields {
  readonly opcode: number
  readonly lifetimeSeconds: number
  readonly clientAddress: string | Uint8Array
  readonly map?: PcpMapRequestFields
  readonly peer?: PcpPeerRequestFields
  readonly options?: readonly PcpOption[]
}

/**
 * Encodes a request as a client would (§7.1, §11.1, §12.1): header, then the MAP or PEER data if
 * given, then options. Throws RangeError on bad input or a result over 1100 bytes.
 */
export function encodePcpRequest(r: PcpRequestFields): Uint8Array {
  if (!Number.isInteger(r.opcode) || r.opcode < 0 || r.opcode > PCP_OPCODE_MASK) throw new RangeError(`bad PCP opcode: ${r.opcode}`)
  const m = r.peer ?? r.map
  const bodyLen = r.peer !== undefined ? PcpLen.PeerBody : r.map !== undefined ? PcpLen.MapBody : 0
  const opts = encodeOptions(r.options ?? [])
  const total = PcpLen.Header + bodyLen + opts.byteLength
  if (total > PcpLen.MaxMessage) throw new RangeError(`PCP request of ${total} bytes exceeds ${PcpLen.MaxMessage}`)
  const out = new Uint8Array(total)
  const v = view(out)
  v.setUint8(0, PCP_VERSION)
  v.setUint8(1, r.opcode)
  v.setUint32(4, r.lifetimeSeconds >>> 0)
  out.set(addressBytes(r.clientAddress, 'clientAddress'), 8)
  if (m !== undefined) {
    const at = PcpLen.Header
    if (m.nonce.byteLength !== PcpLen.Nonce) throw new RangeError(`PCP nonce must be ${PcpLen.Nonce} bytes, got ${m.nonce.byteLength}`)
    out.set(m.nonce, at)
    v.setUint8(at + 12, m.protocol)
    v.setUint16(at + 16, m.internalPort)
    v.setUint16(at + 18, m.suggestedExternalPort)
    out.set(addressBytes(m.suggestedExternalAddress, 'suggestedExternalAddress'), at + 20)
    if (r.peer !== undefined) {
      v.setUint16(at + 36, r.peer.remotePeerPort)
      out.set(addressBytes(r.peer.remotePeerAddress, 'remotePeerAddress'), at + 40)
    }
  }
  out.set(opts, PcpLen.Header + bodyLen)
  return out
}

/** MAP response opcode data as decoded (§11.2). */
export interface PcpMapResponseData {
  readonly nonce: Uint8Array
  readonly protocol: number
  readonly internalPort: number
  readonly assignedExternalPort: number
  readonly assignedExternalAddress: string
  readonly assignedExternalAddressRaw: Uint8Array
}

/** A decoded response (client side). `map` is present for a MAP response of at least 60 bytes. */
export interface PcpDecodedResponse {
  readonly opcode: number
  readonly result: number
  readonly lifetimeSeconds: number
  readonly epochSeconds: number
  readonly map?: PcpMapResponseData
  /** Everything after the 24-byte header (opcode data and options), copied. */
  readonly payload: Uint8Array
}

/**
 * Decodes a PCP response the way a client would, for tests and fake clients. Never throws.
 * Returns null unless: at least 24 bytes, at most 1100, a multiple of 4, version 2, R bit set.
 * Options are not parsed (a client ignores what it does not understand, §7.3).
 */
export function decodePcpResponse(buf: Uint8Array): PcpDecodedResponse | null {
  const len = buf.byteLength
  if (len < PcpLen.Header || len > PcpLen.MaxMessage || len % PcpLen.Alignment !== 0) return null
  const v = view(buf)
  const rOpcode = v.getUint8(1)
  if (v.getUint8(0) !== PCP_VERSION || (rOpcode & RESPONSE_BIT) === 0) return null
  const opcode = rOpcode & PCP_OPCODE_MASK
  const base = {
    opcode,
    result: v.getUint8(3),
    lifetimeSeconds: v.getUint32(4),
    epochSeconds: v.getUint32(8),
    payload: copy(buf, PcpLen.Header, len),
  }
  if (opcode !== PcpOpcode.Map || len < PcpLen.Header + PcpLen.MapBody) return base
  const at = PcpLen.Header
  const assignedExternalAddressRaw = copy(buf, at + 20, at + 36)
  return {
    ...base,
    map: {
      nonce: copy(buf, at, at + PcpLen.Nonce),
      protocol: v.getUint8(at + 12),
      internalPort: v.getUint16(at + 16),
      assignedExternalPort: v.getUint16(at + 18),
      assignedExternalAddress: formatPcpAddress(assignedExternalAddressRaw),
      assignedExternalAddressRaw,
    },
  }
}
