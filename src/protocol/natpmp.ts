/** Pure NAT-PMP (RFC 6886) request decoding and response encoding: no I/O, no clock. */
import { Len, NATPMP_VERSION, Opcode, RESPONSE_BIT, ResultCode } from './constants.js'

export type MapOpcode = typeof Opcode.MapUdp | typeof Opcode.MapTcp

export type Request =
  | { readonly op: typeof Opcode.PublicAddress }
  | {
      readonly op: MapOpcode
      readonly internalPort: number
      readonly suggestedExternalPort: number
      readonly lifetimeSeconds: number
    }

/** What to do with a packet we will not serve: answer with `reply`, or drop it (`reply: null`). */
export type Decoded<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reply: ErrorReply | null }

/** An error answer decided at decode time; its bytes come from encodeErrorReply. */
export interface ErrorReply {
  readonly op: number
  readonly result: ResultCode
  /** For a MAP opcode: the internal port to echo in a 16-byte reply. */
  readonly internalPort?: number
}

/**
 * Decodes a NAT-PMP request. Never throws. Drops (reply null): fewer than 2 bytes, a response
 * opcode (>= 128, RFC 6886 §3.1), a MAP shorter than 12 bytes. Answers: a version other than 0
 * with result 1 (so PCP-first clients fall back), an unknown opcode with result 5. Longer packets
 * are accepted and the excess ignored, as miniupnpd does.
 */
export function decodeRequest(buf: Uint8Array): Decoded<Request> {
  if (buf.byteLength < Len.Header) return { ok: false, reply: null }
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  const version = v.getUint8(0)
  const op = v.getUint8(1)
  if (op >= RESPONSE_BIT) return { ok: false, reply: null }
  // RFC 6886 §3.5 (erratum 3618): unsupported version is answered with opcode 0 + 128.
  if (version !== NATPMP_VERSION) return { ok: false, reply: { op: Opcode.PublicAddress, result: ResultCode.UnsupportedVersion } }
  if (op === Opcode.PublicAddress) return { ok: true, value: { op } }
  if (op === Opcode.MapUdp || op === Opcode.MapTcp) {
    if (buf.byteLength < Len.MapRequest) return { ok: false, reply: null }
    return {
      ok: true,
      value: { op, internalPort: v.getUint16(4), suggestedExternalPort: v.getUint16(6), lifetimeSeconds: v.getUint32(8) },
    }
  }
  return { ok: false, reply: { op, result: ResultCode.UnsupportedOpcode } }
}

const header = (len: number, op: number, result: number, epochSeconds: number): { out: Uint8Array; v: DataView } => {
  const out = new Uint8Array(len)
  const v = new DataView(out.buffer)
  v.setUint8(0, NATPMP_VERSION)
  v.setUint8(1, RESPONSE_BIT | op)
  v.setUint16(2, result)
  v.setUint32(4, epochSeconds >>> 0)
  return { out, v }
}

/** 12 bytes (RFC 6886 §3.2): header, epoch, public IPv4. An error reply carries 0.0.0.0. */
export function encodePublicAddressResponse(result: ResultCode, epochSeconds: number, publicV4: string | null): Uint8Array {
  const { out, v } = header(Len.PublicAddressResponse, Opcode.PublicAddress, result, epochSeconds)
  const parts = (result === ResultCode.Success && publicV4 ? publicV4 : '0.0.0.0').split('.').map(Number)
  parts.forEach((p, i) => v.setUint8(8 + i, p & 0xff))
  return out
}

export interface MapResponse {
  readonly op: MapOpcode
  readonly result: ResultCode
  /** Always the request's internal port, 0 included (libnatpmp and gluetun drop anything else). */
  readonly internalPort: number
  /** 0 on error (RFC 6886 §3.5). */
  readonly externalPort: number
  /** 0 on error. */
  readonly lifetimeSeconds: number
}

/** 16 bytes (RFC 6886 §3.3), errors included. */
export function encodeMapResponse(r: MapResponse, epochSeconds: number): Uint8Array {
  const { out, v } = header(Len.MapResponse, r.op, r.result, epochSeconds)
  const ok = r.result === ResultCode.Success
  v.setUint16(8, r.internalPort)
  v.setUint16(10, ok ? r.externalPort : 0)
  v.setUint32(12, ok ? r.lifetimeSeconds >>> 0 : 0)
  return out
}

/**
 * Bytes for an ErrorReply from decodeRequest: the 8-byte form (version, op|128, result, epoch)
 * for unsupported version/opcode, which every client in the contract accepts as a result.
 */
export function encodeErrorReply(e: ErrorReply, epochSeconds: number): Uint8Array {
  return header(Len.ErrorResponse, e.op, e.result, epochSeconds).out
}

/** Parses a response (for tests, the load generator and clients of our own). Null if malformed. */
export function decodeResponse(
  buf: Uint8Array,
): { op: number; result: number; epochSeconds: number; publicV4?: string; internalPort?: number; externalPort?: number; lifetimeSeconds?: number } | null {
  if (buf.byteLength < Len.ErrorResponse) return null
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  if (v.getUint8(0) !== NATPMP_VERSION || v.getUint8(1) < RESPONSE_BIT) return null
  const op = v.getUint8(1) - RESPONSE_BIT
  const base = { op, result: v.getUint16(2), epochSeconds: v.getUint32(4) }
  if (op === Opcode.PublicAddress && buf.byteLength >= Len.PublicAddressResponse) {
    return { ...base, publicV4: [8, 9, 10, 11].map((i) => v.getUint8(i)).join('.') }
  }
  if ((op === Opcode.MapUdp || op === Opcode.MapTcp) && buf.byteLength >= Len.MapResponse) {
    return { ...base, internalPort: v.getUint16(8), externalPort: v.getUint16(10), lifetimeSeconds: v.getUint32(12) }
  }
  return base
}

/** Encodes a request (for tests and the benchmark's load generator). */
export function encodeRequest(r: Request): Uint8Array {
  if (r.op === Opcode.PublicAddress) return Uint8Array.of(NATPMP_VERSION, Opcode.PublicAddress)
  const out = new Uint8Array(Len.MapRequest)
  const v = new DataView(out.buffer)
  v.setUint8(0, NATPMP_VERSION)
  v.setUint8(1, r.op)
  v.setUint16(4, r.internalPort)
  v.setUint16(6, r.suggestedExternalPort)
  v.setUint32(8, r.lifetimeSeconds >>> 0)
  return out
}
