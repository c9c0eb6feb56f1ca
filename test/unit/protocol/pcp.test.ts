/** Unit tests for the pure PCP (RFC 6887) codec: golden packets, every error path, round-trips, fuzzing. */
import { readFileSync } from 'node:fs'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { PcpErrorLifetime, PcpLen, PcpOpcode, PcpOptionCode, PcpResult } from '../../../src/protocol/constants.js'
import {
  decodePcpRequest,
  decodePcpResponse,
  encodeAnnounceResponse,
  encodeMapResponse,
  encodeMapResponseBody,
  encodePcpRequest,
  encodePcpResponse,
  formatPcpAddress,
  parsePcpAddress,
  pcpErrorLifetime,
  pcpErrorReplyFor,
  type PcpDecoded,
  type PcpRequest,
} from '../../../src/protocol/pcp.js'
import { formatIpv6, ipv4ToMapped, isIpv4Mapped, mappedToIpv4, parseIpv4, parseIpv6 } from '../../../src/core/ip.js'

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const fromHex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'))
const hex = (s: TemplateStringsArray, ...parts: string[]): Uint8Array => fromHex(String.raw({ raw: s }, ...parts))
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
/** Loads test/fixtures/packets/pcp/<name>.hex: hex bytes, `#` comment lines ignored. */
const fixture = (name: string): Uint8Array =>
  fromHex(
    readFileSync(new URL(`../../fixtures/packets/pcp/${name}.hex`, import.meta.url), 'utf8')
      .split('\n')
      .filter((l) => !l.trimStart().startsWith('#'))
      .join(' '),
  )
const dv = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength)
const concat = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let off = 0
  for (const p of parts) {
    out.set(p, off)
    off += p.byteLength
  }
  return out
}
/** A copy of `b` with one byte changed. */
const withByte = (b: Uint8Array, at: number, value: number): Uint8Array => {
  const out = new Uint8Array(b)
  dv(out).setUint8(at, value)
  return out
}
const withUint16 = (b: Uint8Array, at: number, value: number): Uint8Array => {
  const out = new Uint8Array(b)
  dv(out).setUint16(at, value)
  return out
}

const EPOCH = 1234

function expectOk(d: PcpDecoded): PcpRequest {
  if (!d.ok) throw new Error(`expected ok, got ${d.reason} (result ${String(d.result)})`)
  return d.value
}

function expectRejected(d: PcpDecoded): Extract<PcpDecoded, { ok: false }> {
  if (d.ok) throw new Error('expected a rejection')
  return d
}

/**
 * Asserts `reply` is a well-formed PCP error response to `request` (RFC 6887 §7.2, §8.3):
 * version 2, R bit + the request opcode, reserved 0, the result, the error lifetime, the epoch,
 * 96 zero bits, then the request bytes from offset 24 (up to 1100), zero padded.
 */
function expectErrorReplyTo(request: Uint8Array, reply: Uint8Array | null, result: number, copyBody = true): void {
  expect(reply).toBeInstanceOf(Uint8Array)
  if (reply === null) return
  const r = dv(reply)
  const q = dv(request)
  expect(reply.byteLength % 4).toBe(0)
  expect(reply.byteLength).toBeGreaterThanOrEqual(24)
  expect(reply.byteLength).toBeLessThanOrEqual(1100)
  expect(r.getUint8(0)).toBe(2)
  expect(r.getUint8(1)).toBe(0x80 | (q.getUint8(1) & 0x7f))
  expect(r.getUint8(2)).toBe(0)
  expect(r.getUint8(3)).toBe(result)
  expect(r.getUint32(4)).toBe(pcpErrorLifetime(result))
  expect(r.getUint32(8)).toBe(EPOCH)
  expect(toHex(reply.subarray(12, 24))).toBe('00'.repeat(12))
  if (!copyBody) {
    expect(reply.byteLength).toBe(24)
    return
  }
  const copied = Math.min(request.byteLength, 1100)
  expect(reply.byteLength).toBe(Math.max(24, Math.ceil(copied / 4) * 4))
  if (copied > 24) expect(toHex(reply.subarray(24, copied))).toBe(toHex(request.subarray(24, copied)))
  expect(reply.subarray(Math.max(24, copied)).every((b) => b === 0)).toBe(true)
}

/**
 * What libtorrent 2.0.x natpmp.cpp on_reply does with a reply to a PCP MAP (RC_2_0/RC_2_1):
 * result at offset 3 (1 → fall back to NAT-PMP), then the length must be exactly 60, and the
 * mapping is found by nonce, protocol (6 → tcp, anything else udp) and internal port.
 */
function libtorrentOnReply(
  reply: Uint8Array,
  m: { nonce: Uint8Array; tcp: boolean; localPort: number },
): 'fallback' | 'ignored' | { result: number; externalPort: number; lifetime: number; externalAddress: string } {
  if (reply.byteLength < 4) return 'ignored'
  const v = dv(reply)
  const version = v.getUint8(0)
  if (version !== 0 && version !== 2) return 'ignored'
  const result = version === 2 ? v.getUint8(3) : v.getUint16(2)
  if (result === 1) return 'fallback'
  if (version !== 2 || reply.byteLength !== 60) return 'ignored'
  const tcp = v.getUint8(36) === 6
  if (toHex(reply.subarray(24, 36)) !== toHex(m.nonce) || tcp !== m.tcp || v.getUint16(40) !== m.localPort) return 'ignored'
  return {
    result,
    lifetime: v.getUint32(4),
    externalPort: v.getUint16(42),
    externalAddress: formatPcpAddress(reply.subarray(44, 60)),
  }
}

/** Bitcoin Core src/common/pcp.cpp PCPRequestPortMap's check_packet for a v2 reply. */
function bitcoinAccepts(reply: Uint8Array, nonce: Uint8Array, port: number): boolean {
  if (reply.byteLength < 60) return false
  const v = dv(reply)
  return v.getUint8(0) === 2 && v.getUint8(1) === 0x81 && toHex(reply.subarray(24, 36)) === toHex(nonce) && v.getUint8(36) === 6 && v.getUint16(40) === port
}

// ---------------------------------------------------------------------------------------------
// Golden packets
// ---------------------------------------------------------------------------------------------

const LT_MAP = fixture('libtorrent-2.0-map-udp-request')
const LT_REPLY = fixture('libtorrent-2.0-map-udp-success-reply')
const BTC_MAP = fixture('bitcoin-core-map-tcp-request')
const ANNOUNCE_REQ = fixture('announce-request')
const ANNOUNCE_REPLY = fixture('announce-reply')
const LT_NONCE = hex`5a1c9e2b 7f3044d1 860eb357`
const BTC_NONCE = hex`c0ffee00 11223344 55667788`

/** libtorrent's MAP with protocol 6 (its TCP mapping); otherwise identical. */
const LT_MAP_TCP = withByte(LT_MAP, 36, 6)

/** Options, built by hand from RFC 6887 §13 layouts. */
const OPT_PREFER_FAILURE = hex`02 00 0000`
/** THIRD_PARTY for ::ffff:10.8.0.3. */
const OPT_THIRD_PARTY = hex`01 00 0010  00000000 00000000 0000ffff 0a080003`
/** FILTER: reserved 0, prefix 128, remote port 443, remote ::ffff:198.51.100.9. */
const OPT_FILTER = hex`03 00 0014  00 80 01bb  00000000 00000000 0000ffff c6336409`

/** PEER request (§12.1), built by hand: client 10.8.0.2, TCP 5000 → 198.51.100.9:443, 80 bytes. */
const PEER_REQ = hex`
  02 02 0000  00000e10  00000000 00000000 0000ffff 0a080002
  0102030405060708090a0b0c  06 000000  1388 0000  00000000 00000000 0000ffff 00000000
  01bb 0000  00000000 00000000 0000ffff c6336409`

describe('PCP golden packets', () => {
  it('decodes libtorrent 2.0 MAP request (UDP 6881, 3600 s, ::ffff:10.8.0.2)', () => {
    expect(LT_MAP.byteLength).toBe(60)
    const req = expectOk(decodePcpRequest(LT_MAP, EPOCH))
    expect(req).toEqual({
      opcode: PcpOpcode.Map,
      lifetimeSeconds: 3600,
      clientAddress: '10.8.0.2',
      clientAddressRaw: hex`00000000 00000000 0000ffff 0a080002`,
      map: {
        nonce: LT_NONCE,
        protocol: 17,
        internalPort: 6881,
        suggestedExternalPort: 6881,
        suggestedExternalAddress: '0.0.0.0',
        suggestedExternalAddressRaw: hex`00000000 00000000 0000ffff 00000000`,
      },
      options: [],
      preferFailure: false,
      filters: [],
      ignoredOptionCodes: [],
      raw: LT_MAP,
    })
  })

  it('decodes libtorrent TCP MAP (protocol 6)', () => {
    const req = expectOk(decodePcpRequest(LT_MAP_TCP, EPOCH))
    expect(req.opcode === PcpOpcode.Map && req.map.protocol).toBe(6)
  })

  it('encodes the exact 60-byte success reply libtorrent accepts', () => {
    const req = expectOk(decodePcpRequest(LT_MAP, EPOCH))
    if (req.opcode !== PcpOpcode.Map) throw new Error('not MAP')
    const reply = encodeMapResponse({
      result: PcpResult.Success,
      lifetimeSeconds: 3600,
      epochSeconds: EPOCH,
      nonce: req.map.nonce,
      protocol: req.map.protocol,
      internalPort: req.map.internalPort,
      assignedExternalPort: 40001,
      assignedExternalAddress: '203.0.113.7',
    })
    expect(toHex(reply)).toBe(toHex(LT_REPLY))
    expect(libtorrentOnReply(reply, { nonce: LT_NONCE, tcp: false, localPort: 6881 })).toEqual({
      result: 0,
      lifetime: 3600,
      externalPort: 40001,
      externalAddress: '203.0.113.7',
    })
  })

  it('encodeMapResponseBody is the 36 bytes after the header', () => {
    const body = encodeMapResponseBody({
      nonce: LT_NONCE,
      protocol: 17,
      internalPort: 6881,
      assignedExternalPort: 40001,
      assignedExternalAddress: '203.0.113.7',
    })
    expect(toHex(body)).toBe(toHex(LT_REPLY.subarray(24)))
    const reply = encodePcpResponse({ opcode: PcpOpcode.Map, result: 0, lifetimeSeconds: 3600, epochSeconds: EPOCH, body })
    expect(toHex(reply)).toBe(toHex(LT_REPLY))
  })

  it('decodes Bitcoin Core MAP (TCP 8333, 2400 s) and an accepted reply and error reply', () => {
    const req = expectOk(decodePcpRequest(BTC_MAP, EPOCH))
    if (req.opcode !== PcpOpcode.Map) throw new Error('not MAP')
    expect(req.lifetimeSeconds).toBe(2400)
    expect(req.map).toMatchObject({ protocol: 6, internalPort: 8333, suggestedExternalPort: 8333, suggestedExternalAddress: '10.8.0.2' })
    const ok = encodeMapResponse({
      ...req.map,
      result: 0,
      lifetimeSeconds: 2400,
      epochSeconds: EPOCH,
      assignedExternalPort: 8333,
      assignedExternalAddress: '203.0.113.7',
    })
    expect(bitcoinAccepts(ok, BTC_NONCE, 8333)).toBe(true)
    // A refusal built from the request still carries nonce, protocol and port, so Bitcoin reads its result.
    const refusal = pcpErrorReplyFor(BTC_MAP, PcpResult.NotAuthorized, EPOCH)
    expectErrorReplyTo(BTC_MAP, refusal, PcpResult.NotAuthorized)
    expect(refusal !== null && bitcoinAccepts(refusal, BTC_NONCE, 8333)).toBe(true)
  })

  it('decodes MAP + PREFER_FAILURE', () => {
    const req = expectOk(decodePcpRequest(concat(LT_MAP, OPT_PREFER_FAILURE), EPOCH))
    expect(req.preferFailure).toBe(true)
    expect(req.options).toEqual([{ code: PcpOptionCode.PreferFailure, data: new Uint8Array(0) }])
    expect(req.thirdParty).toBeUndefined()
  })

  it('decodes MAP + THIRD_PARTY (exposed, not judged)', () => {
    const req = expectOk(decodePcpRequest(concat(LT_MAP, OPT_THIRD_PARTY), EPOCH))
    expect(req.thirdParty).toEqual({ address: '10.8.0.3', addressRaw: OPT_THIRD_PARTY.subarray(4) })
    expect(req.options).toEqual([{ code: PcpOptionCode.ThirdParty, data: OPT_THIRD_PARTY.subarray(4) }])
  })

  it('decodes MAP + FILTER (and FILTER may repeat)', () => {
    const req = expectOk(decodePcpRequest(concat(LT_MAP, OPT_FILTER, OPT_FILTER), EPOCH))
    const filter = {
      prefixLength: 128,
      remotePeerPort: 443,
      remotePeerAddress: '198.51.100.9',
      remotePeerAddressRaw: OPT_FILTER.subarray(8),
    }
    expect(req.filters).toEqual([filter, filter])
    expect(req.options).toHaveLength(2)
  })

  it('decodes MAP with all three options in wire order', () => {
    const req = expectOk(decodePcpRequest(concat(LT_MAP, OPT_FILTER, OPT_THIRD_PARTY, OPT_PREFER_FAILURE), EPOCH))
    expect(req.options.map((o) => o.code)).toEqual([3, 1, 2])
    expect(req.preferFailure).toBe(true)
    expect(req.thirdParty?.address).toBe('10.8.0.3')
  })

  it('decodes ANNOUNCE request and encodes the ANNOUNCE reply', () => {
    expect(expectOk(decodePcpRequest(ANNOUNCE_REQ, EPOCH))).toEqual({
      opcode: PcpOpcode.Announce,
      lifetimeSeconds: 0,
      clientAddress: '10.8.0.2',
      clientAddressRaw: ANNOUNCE_REQ.subarray(8, 24),
      options: [],
      preferFailure: false,
      filters: [],
      ignoredOptionCodes: [],
      raw: ANNOUNCE_REQ,
    })
    expect(toHex(encodeAnnounceResponse(EPOCH))).toBe(toHex(ANNOUNCE_REPLY))
  })

  it('decodes PEER so the daemon can answer UNSUPP_OPCODE', () => {
    expect(PEER_REQ.byteLength).toBe(80)
    const req = expectOk(decodePcpRequest(PEER_REQ, EPOCH))
    if (req.opcode !== PcpOpcode.Peer) throw new Error('not PEER')
    expect(req.peer).toEqual({
      nonce: hex`0102030405060708090a0b0c`,
      protocol: 6,
      internalPort: 5000,
      suggestedExternalPort: 0,
      suggestedExternalAddress: '0.0.0.0',
      suggestedExternalAddressRaw: hex`00000000 00000000 0000ffff 00000000`,
      remotePeerPort: 443,
      remotePeerAddress: '198.51.100.9',
      remotePeerAddressRaw: hex`00000000 00000000 0000ffff c6336409`,
    })
    const reply = pcpErrorReplyFor(req.raw, PcpResult.UnsuppOpcode, EPOCH)
    expectErrorReplyTo(PEER_REQ, reply, PcpResult.UnsuppOpcode)
    expect(reply === null ? '' : toHex(reply)).toBe(toHex(hex`02 82 00 04  00000708 000004d2 000000000000000000000000`) + toHex(PEER_REQ.subarray(24)))
  })

  it('THIRD_PARTY is valid in PEER', () => {
    const req = expectOk(decodePcpRequest(concat(PEER_REQ, OPT_THIRD_PARTY), EPOCH))
    expect(req.thirdParty?.address).toBe('10.8.0.3')
  })
})

// ---------------------------------------------------------------------------------------------
// Error paths
// ---------------------------------------------------------------------------------------------

describe('PCP decode error paths', () => {
  it.each([
    ['empty', new Uint8Array(0)],
    ['1 byte', hex`02`],
  ])('drops a packet too short to read (%s)', (_name, buf) => {
    expect(decodePcpRequest(buf, EPOCH)).toEqual({ ok: false, reason: 'too-short', result: null, reply: null })
  })

  it('drops a response (R bit set), whatever its version or length', () => {
    for (const buf of [withByte(LT_MAP, 1, 0x81), LT_REPLY, hex`03 81`, hex`01 80 0000`, ANNOUNCE_REPLY]) {
      expect(decodePcpRequest(buf, EPOCH)).toEqual({ ok: false, reason: 'response', result: null, reply: null })
    }
  })

  it('drops version 0: NAT-PMP is decoded elsewhere', () => {
    expect(decodePcpRequest(hex`00 01 0000 1ae1 1ae1 00000e10`, EPOCH)).toMatchObject({ ok: false, reason: 'not-pcp', reply: null })
  })

  it.each([
    ['version 1 (pre-RFC drafts)', 1],
    ['version 3', 3],
    ['version 255', 255],
  ])('answers %s with UNSUPP_VERSION: a 24-byte v2 header', (_name, version) => {
    const buf = withByte(LT_MAP, 0, version)
    const d = expectRejected(decodePcpRequest(buf, EPOCH))
    expect(d).toMatchObject({ reason: 'unsupported-version', result: PcpResult.UnsuppVersion })
    expectErrorReplyTo(buf, d.reply, PcpResult.UnsuppVersion, false)
    expect(d.reply === null ? '' : toHex(d.reply)).toBe('0281000100000708000004d2' + '00'.repeat(12))
    // libtorrent reads result 1 from a v2 reply and falls back to NAT-PMP.
    expect(d.reply !== null && libtorrentOnReply(d.reply, { nonce: LT_NONCE, tcp: false, localPort: 6881 })).toBe('fallback')
  })

  it('answers an unsupported version even when shorter than a header', () => {
    const d = expectRejected(decodePcpRequest(hex`03 01`, EPOCH))
    expect(d.result).toBe(PcpResult.UnsuppVersion)
    expectErrorReplyTo(hex`03 01`, d.reply, PcpResult.UnsuppVersion, false)
  })

  it.each([
    ['2 bytes', hex`02 01`],
    ['20 bytes', LT_MAP.subarray(0, 20)],
  ])('answers a v2 packet shorter than 24 bytes (%s) with MALFORMED_REQUEST, 24 bytes', (_name, buf) => {
    const d = expectRejected(decodePcpRequest(buf, EPOCH))
    expect(d).toMatchObject({ reason: 'bad-length', result: PcpResult.MalformedRequest })
    expectErrorReplyTo(buf, d.reply, PcpResult.MalformedRequest)
    expect(d.reply?.byteLength).toBe(24)
  })

  it('answers a packet over 1100 bytes with MALFORMED_REQUEST, copying only 1100 bytes', () => {
    const buf = concat(LT_MAP, new Uint8Array(1104 - 60))
    const d = expectRejected(decodePcpRequest(buf, EPOCH))
    expect(d).toMatchObject({ reason: 'bad-length', result: PcpResult.MalformedRequest })
    expectErrorReplyTo(buf, d.reply, PcpResult.MalformedRequest)
    expect(d.reply?.byteLength).toBe(1100)
  })

  it('accepts exactly 1100 bytes (MAP + 1040 bytes of one optional option)', () => {
    const opt = concat(hex`c8 00 040c`, new Uint8Array(1036))
    const buf = concat(LT_MAP, opt)
    expect(buf.byteLength).toBe(1100)
    expect(expectOk(decodePcpRequest(buf, EPOCH)).ignoredOptionCodes).toEqual([0xc8])
  })

  it('answers a length that is not a multiple of 4 with MALFORMED_REQUEST, padded', () => {
    const buf = concat(LT_MAP, hex`00`)
    const d = expectRejected(decodePcpRequest(buf, EPOCH))
    expect(d).toMatchObject({ reason: 'bad-length', result: PcpResult.MalformedRequest })
    expectErrorReplyTo(buf, d.reply, PcpResult.MalformedRequest)
    expect(d.reply?.byteLength).toBe(64)
  })

  it.each([3, 4, 98, 127])('answers unknown opcode %i with UNSUPP_OPCODE, echoing the request', (op) => {
    const buf = withByte(LT_MAP, 1, op)
    const d = expectRejected(decodePcpRequest(buf, EPOCH))
    expect(d).toMatchObject({ reason: 'unsupported-opcode', result: PcpResult.UnsuppOpcode })
    expectErrorReplyTo(buf, d.reply, PcpResult.UnsuppOpcode)
    expect(d.reply?.byteLength).toBe(60)
  })

  it.each([
    ['MAP of 56 bytes', LT_MAP.subarray(0, 56)],
    ['MAP of 24 bytes', LT_MAP.subarray(0, 24)],
    ['PEER of 76 bytes', PEER_REQ.subarray(0, 76)],
    ['PEER of 60 bytes', PEER_REQ.subarray(0, 60)],
  ])('answers a truncated opcode body (%s) with MALFORMED_REQUEST', (_name, buf) => {
    const d = expectRejected(decodePcpRequest(buf, EPOCH))
    expect(d).toMatchObject({ reason: 'truncated-opcode-data', result: PcpResult.MalformedRequest })
    expectErrorReplyTo(buf, d.reply, PcpResult.MalformedRequest)
  })

  it('answers protocol 0 with internal port ≠ 0 with MALFORMED_REQUEST (§11.1)', () => {
    const buf = withByte(LT_MAP, 36, 0)
    const d = expectRejected(decodePcpRequest(buf, EPOCH))
    expect(d).toMatchObject({ reason: 'protocol-zero-with-port', result: PcpResult.MalformedRequest })
    expectErrorReplyTo(buf, d.reply, PcpResult.MalformedRequest)
    expect(decodePcpRequest(withByte(PEER_REQ, 36, 0), EPOCH)).toMatchObject({ reason: 'protocol-zero-with-port' })
  })

  it('accepts protocol 0 with internal port 0 ("all protocols, all ports")', () => {
    const buf = withUint16(withByte(LT_MAP, 36, 0), 40, 0)
    const req = expectOk(decodePcpRequest(buf, EPOCH))
    expect(req.opcode === PcpOpcode.Map && req.map).toMatchObject({ protocol: 0, internalPort: 0 })
  })

  const malformedOption: [string, Uint8Array, string][] = [
    ['a lone 4-byte header claiming 16 bytes of data', hex`01 00 0010`, 'option-overrun'],
    ['an optional option overrunning the packet', hex`c8 00 0008 00000000`, 'option-overrun'],
    ['data length 1 with its padding missing past the end', concat(OPT_PREFER_FAILURE, hex`c8 00 0005 00000000`), 'option-overrun'],
    ['THIRD_PARTY of length 4', hex`01 00 0004 0a080003`, 'option-length'],
    ['PREFER_FAILURE of length 4', hex`02 00 0004 00000000`, 'option-length'],
    ['FILTER of length 16', hex`03 00 0010 00000000 00000000 0000ffff c6336409`, 'option-length'],
    ['PREFER_FAILURE twice', concat(OPT_PREFER_FAILURE, OPT_PREFER_FAILURE), 'option-repeated'],
    ['THIRD_PARTY twice', concat(OPT_THIRD_PARTY, OPT_THIRD_PARTY), 'option-repeated'],
    ['FILTER prefix length 129', withByte(OPT_FILTER, 5, 129), 'option-filter-prefix'],
  ]
  it.each(malformedOption)('answers MAP with %s with MALFORMED_OPTION', (_name, opts, reason) => {
    const buf = concat(LT_MAP, opts)
    const d = expectRejected(decodePcpRequest(buf, EPOCH))
    expect(d).toMatchObject({ reason, result: PcpResult.MalformedOption })
    expectErrorReplyTo(buf, d.reply, PcpResult.MalformedOption)
  })

  it.each([
    ['PREFER_FAILURE in PEER', concat(PEER_REQ, OPT_PREFER_FAILURE)],
    ['FILTER in PEER', concat(PEER_REQ, OPT_FILTER)],
    ['THIRD_PARTY in ANNOUNCE', concat(ANNOUNCE_REQ, OPT_THIRD_PARTY)],
  ])('answers %s (option not defined for the opcode) with MALFORMED_OPTION', (_name, buf) => {
    const d = expectRejected(decodePcpRequest(buf, EPOCH))
    expect(d).toMatchObject({ reason: 'option-not-for-opcode', result: PcpResult.MalformedOption })
    expectErrorReplyTo(buf, d.reply, PcpResult.MalformedOption)
  })

  it.each([0, 4, 99, 127])('answers unknown mandatory option %i with UNSUPP_OPTION', (code) => {
    const buf = concat(LT_MAP, OPT_PREFER_FAILURE, withByte(hex`00 00 0004 deadbeef`, 0, code))
    const d = expectRejected(decodePcpRequest(buf, EPOCH))
    expect(d).toMatchObject({ reason: 'unsupported-option', result: PcpResult.UnsuppOption })
    expectErrorReplyTo(buf, d.reply, PcpResult.UnsuppOption)
  })

  it('skips unknown optional options (128-255), padded or empty, and keeps going', () => {
    const buf = concat(LT_MAP, hex`80 00 0000`, hex`c3 00 0003 aabbcc00`, OPT_PREFER_FAILURE, hex`ff 00 0001 01000000`)
    const req = expectOk(decodePcpRequest(buf, EPOCH))
    expect(req.ignoredOptionCodes).toEqual([0x80, 0xc3, 0xff])
    expect(req.options).toEqual([{ code: PcpOptionCode.PreferFailure, data: new Uint8Array(0) }])
    expect(req.preferFailure).toBe(true)
  })

  it('the first problem wins: an unknown mandatory option before a malformed one', () => {
    const d = decodePcpRequest(concat(LT_MAP, hex`63 00 0000`, hex`02 00 0004 00000000`), EPOCH)
    expect(d).toMatchObject({ ok: false, result: PcpResult.UnsuppOption })
  })

  it('reads a Buffer view at a non-zero offset and copies what it returns', () => {
    const pool = Buffer.alloc(200, 0xee)
    LT_MAP.forEach((b, i) => pool.writeUInt8(b, 40 + i))
    const view = pool.subarray(40, 100)
    const req = expectOk(decodePcpRequest(view, EPOCH))
    expect(toHex(req.raw)).toBe(toHex(LT_MAP))
    pool.fill(0)
    expect(toHex(req.raw)).toBe(toHex(LT_MAP))
    expect(req.opcode === PcpOpcode.Map && toHex(req.map.nonce)).toBe(toHex(LT_NONCE))
  })
})

describe('pcpErrorReplyFor', () => {
  it('builds policy refusals from a valid request (ADDRESS_MISMATCH, NOT_AUTHORIZED, NO_RESOURCES)', () => {
    for (const result of [PcpResult.AddressMismatch, PcpResult.NotAuthorized, PcpResult.NoResources, PcpResult.CannotProvideExternal]) {
      const reply = pcpErrorReplyFor(LT_MAP, result, EPOCH)
      expectErrorReplyTo(LT_MAP, reply, result)
      expect(reply === null ? null : libtorrentOnReply(reply, { nonce: LT_NONCE, tcp: false, localPort: 6881 })).toMatchObject({
        result,
        externalPort: 6881,
      })
    }
  })

  it('zeroes the client address: a response header has epoch + 96 reserved bits there (§7.2)', () => {
    const reply = pcpErrorReplyFor(LT_MAP, PcpResult.NotAuthorized, EPOCH)
    expect(reply === null ? '' : toHex(reply.subarray(0, 24))).toBe('0281000200000708000004d2' + '00'.repeat(12))
  })

  it('echoes options in the copy (§7.3: a complete copy of the request)', () => {
    const buf = concat(LT_MAP, OPT_PREFER_FAILURE)
    const reply = pcpErrorReplyFor(buf, PcpResult.CannotProvideExternal, EPOCH)
    expectErrorReplyTo(buf, reply, PcpResult.CannotProvideExternal)
    expect(reply === null ? '' : toHex(reply.subarray(60))).toBe(toHex(OPT_PREFER_FAILURE))
  })

  it('uses 30 s for short-lifetime errors and 1800 s for long ones (§7.4)', () => {
    const short = [PcpResult.NetworkFailure, PcpResult.NoResources, PcpResult.UserExQuota, PcpResult.CannotProvideExternal]
    for (let r = 1; r <= 13; r++) {
      expect(pcpErrorLifetime(r)).toBe((short as number[]).includes(r) ? PcpErrorLifetime.Short : PcpErrorLifetime.Long)
    }
    expect(pcpErrorLifetime(PcpResult.Success)).toBe(0)
    expect(PcpErrorLifetime).toEqual({ Short: 30, Long: 1800 })
  })

  it('drops what must not be answered and rejects a non-error result', () => {
    expect(pcpErrorReplyFor(hex`02`, PcpResult.MalformedRequest, EPOCH)).toBeNull()
    expect(pcpErrorReplyFor(LT_REPLY, PcpResult.MalformedRequest, EPOCH)).toBeNull()
    expect(pcpErrorReplyFor(hex`00 01 0000`, PcpResult.MalformedRequest, EPOCH)).toBeNull()
    expect(() => pcpErrorReplyFor(LT_MAP, PcpResult.Success, EPOCH)).toThrow(RangeError)
    expect(() => pcpErrorReplyFor(LT_MAP, 256, EPOCH)).toThrow(RangeError)
  })
})

// ---------------------------------------------------------------------------------------------
// Encoding and round-trips
// ---------------------------------------------------------------------------------------------

describe('PCP encoding', () => {
  it('round-trips a MAP request with options', () => {
    const options = [
      { code: PcpOptionCode.ThirdParty, data: ipv4ToMapped('10.8.0.3') ?? new Uint8Array(16) },
      { code: PcpOptionCode.PreferFailure, data: new Uint8Array(0) },
      { code: PcpOptionCode.Filter, data: OPT_FILTER.subarray(4) },
    ]
    const buf = encodePcpRequest({
      opcode: PcpOpcode.Map,
      lifetimeSeconds: 7200,
      clientAddress: '10.8.0.2',
      map: { nonce: LT_NONCE, protocol: 17, internalPort: 6881, suggestedExternalPort: 0, suggestedExternalAddress: '0.0.0.0' },
      options,
    })
    expect(toHex(buf.subarray(0, 60))).toBe(
      toHex(hex`02010000 00001c20 00000000 00000000 0000ffff 0a080002
                5a1c9e2b 7f3044d1 860eb357 11000000 1ae1 0000 00000000 00000000 0000ffff 00000000`),
    )
    const req = expectOk(decodePcpRequest(buf, EPOCH))
    if (req.opcode !== PcpOpcode.Map) throw new Error('not MAP')
    expect(req.lifetimeSeconds).toBe(7200)
    expect(req.map).toMatchObject({ protocol: 17, internalPort: 6881, suggestedExternalPort: 0, suggestedExternalAddress: '0.0.0.0' })
    expect(req.options).toEqual(options)
    expect(req.preferFailure).toBe(true)
    expect(req.filters).toHaveLength(1)
  })

  it('round-trips a PEER request and an ANNOUNCE request', () => {
    const peer = encodePcpRequest({
      opcode: PcpOpcode.Peer,
      lifetimeSeconds: 3600,
      clientAddress: '10.8.0.2',
      peer: {
        nonce: hex`0102030405060708090a0b0c`,
        protocol: 6,
        internalPort: 5000,
        suggestedExternalPort: 0,
        suggestedExternalAddress: '0.0.0.0',
        remotePeerPort: 443,
        remotePeerAddress: '198.51.100.9',
      },
    })
    expect(toHex(peer)).toBe(toHex(PEER_REQ))
    const announce = encodePcpRequest({ opcode: PcpOpcode.Announce, lifetimeSeconds: 0, clientAddress: '10.8.0.2' })
    expect(toHex(announce)).toBe(toHex(ANNOUNCE_REQ))
    expect(expectOk(decodePcpRequest(announce, EPOCH)).opcode).toBe(PcpOpcode.Announce)
  })

  it('round-trips an IPv6 MAP request', () => {
    const buf = encodePcpRequest({
      opcode: PcpOpcode.Map,
      lifetimeSeconds: 600,
      clientAddress: 'fd42:42:42::2',
      map: { nonce: LT_NONCE, protocol: 6, internalPort: 443, suggestedExternalPort: 443, suggestedExternalAddress: '::' },
    })
    const req = expectOk(decodePcpRequest(buf, EPOCH))
    expect(req.clientAddress).toBe('fd42:42:42::2')
    expect(req.opcode === PcpOpcode.Map && req.map.suggestedExternalAddress).toBe('::')
  })

  it('round-trips MAP, ANNOUNCE and error responses through decodePcpResponse', () => {
    expect(decodePcpResponse(LT_REPLY)).toEqual({
      opcode: PcpOpcode.Map,
      result: 0,
      lifetimeSeconds: 3600,
      epochSeconds: EPOCH,
      payload: LT_REPLY.subarray(24),
      map: {
        nonce: LT_NONCE,
        protocol: 17,
        internalPort: 6881,
        assignedExternalPort: 40001,
        assignedExternalAddress: '203.0.113.7',
        assignedExternalAddressRaw: LT_REPLY.subarray(44),
      },
    })
    expect(decodePcpResponse(encodeAnnounceResponse(99))).toEqual({
      opcode: PcpOpcode.Announce,
      result: 0,
      lifetimeSeconds: 0,
      epochSeconds: 99,
      payload: new Uint8Array(0),
    })
    const refusal = pcpErrorReplyFor(PEER_REQ, PcpResult.UnsuppOpcode, EPOCH)
    expect(refusal === null ? null : decodePcpResponse(refusal)).toMatchObject({ opcode: PcpOpcode.Peer, result: 4, lifetimeSeconds: 1800 })
    expect(decodePcpResponse(LT_MAP)).toBeNull() // a request is not a response
  })

  it('appends options padded to 4 bytes', () => {
    const out = encodePcpResponse({
      opcode: PcpOpcode.Map,
      result: 0,
      lifetimeSeconds: 60,
      epochSeconds: 1,
      body: LT_REPLY.subarray(24),
      options: [
        { code: 0xc3, data: hex`aabbcc` },
        { code: PcpOptionCode.PreferFailure, data: new Uint8Array(0) },
      ],
    })
    expect(toHex(out.subarray(60))).toBe('c3000003aabbcc00' + '02000000')
  })

  it('throws RangeError on programming errors, never silently truncates', () => {
    const base = { opcode: PcpOpcode.Map, result: 0, lifetimeSeconds: 0, epochSeconds: 0 }
    expect(() => encodePcpResponse({ ...base, body: new Uint8Array(3) })).toThrow(RangeError)
    expect(() => encodePcpResponse({ ...base, body: new Uint8Array(1080) })).toThrow(RangeError)
    expect(() => encodePcpResponse({ ...base, opcode: 128 })).toThrow(RangeError)
    expect(() => encodePcpResponse({ ...base, result: 256 })).toThrow(RangeError)
    const body = { nonce: LT_NONCE, protocol: 6, internalPort: 1, assignedExternalPort: 1 }
    expect(() => encodeMapResponseBody({ ...body, assignedExternalAddress: 'not-an-ip' })).toThrow(RangeError)
    expect(() => encodeMapResponseBody({ ...body, nonce: new Uint8Array(8), assignedExternalAddress: '1.2.3.4' })).toThrow(RangeError)
    expect(() => encodeMapResponseBody({ ...body, assignedExternalAddress: new Uint8Array(4) })).toThrow(RangeError)
    expect(encodePcpResponse({ ...base, body: new Uint8Array(1076) }).byteLength).toBe(PcpLen.MaxMessage)
  })

  it('round-trips random MAP requests (fast-check)', () => {
    const addr = fc.uint8Array({ minLength: 16, maxLength: 16 })
    fc.assert(
      fc.property(
        fc.record({
          lifetime: fc.nat({ max: 0xffffffff }),
          client: addr,
          nonce: fc.uint8Array({ minLength: 12, maxLength: 12 }),
          protocol: fc.integer({ min: 1, max: 255 }),
          internalPort: fc.nat({ max: 0xffff }),
          externalPort: fc.nat({ max: 0xffff }),
          external: addr,
          preferFailure: fc.boolean(),
          filters: fc.array(fc.tuple(fc.nat({ max: 128 }), fc.nat({ max: 0xffff }), addr), { maxLength: 5 }),
        }),
        (r) => {
          const filterData = r.filters.map(([prefix, port, a]) => {
            const d = new Uint8Array(20)
            dv(d).setUint8(1, prefix)
            dv(d).setUint16(2, port)
            d.set(a, 4)
            return { code: PcpOptionCode.Filter, data: d }
          })
          const options = [...(r.preferFailure ? [{ code: PcpOptionCode.PreferFailure, data: new Uint8Array(0) }] : []), ...filterData]
          const buf = encodePcpRequest({
            opcode: PcpOpcode.Map,
            lifetimeSeconds: r.lifetime,
            clientAddress: r.client,
            map: {
              nonce: r.nonce,
              protocol: r.protocol,
              internalPort: r.internalPort,
              suggestedExternalPort: r.externalPort,
              suggestedExternalAddress: r.external,
            },
            options,
          })
          const req = expectOk(decodePcpRequest(buf, EPOCH))
          if (req.opcode !== PcpOpcode.Map) throw new Error('not MAP')
          expect(req.lifetimeSeconds).toBe(r.lifetime)
          expect(req.clientAddressRaw).toEqual(r.client)
          expect(parsePcpAddress(req.clientAddress)).toEqual(r.client)
          expect(req.map).toEqual({
            nonce: r.nonce,
            protocol: r.protocol,
            internalPort: r.internalPort,
            suggestedExternalPort: r.externalPort,
            suggestedExternalAddress: formatPcpAddress(r.external),
            suggestedExternalAddressRaw: r.external,
          })
          expect(req.options).toEqual(options)
          expect(req.preferFailure).toBe(r.preferFailure)
          expect(req.filters.map((f) => [f.prefixLength, f.remotePeerPort, f.remotePeerAddressRaw])).toEqual(r.filters)
          const reply = encodeMapResponse({
            ...req.map,
            result: 0,
            lifetimeSeconds: r.lifetime,
            epochSeconds: EPOCH,
            assignedExternalPort: r.externalPort,
            assignedExternalAddress: r.external,
          })
          expect(decodePcpResponse(reply)?.map).toEqual({
            nonce: r.nonce,
            protocol: r.protocol,
            internalPort: r.internalPort,
            assignedExternalPort: r.externalPort,
            assignedExternalAddress: formatPcpAddress(r.external),
            assignedExternalAddressRaw: r.external,
          })
        },
      ),
      { seed: 6887, numRuns: 500 },
    )
  })
})

// ---------------------------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------------------------

describe('PCP address helpers', () => {
  it('maps IPv4 to ::ffff:a.b.c.d and back', () => {
    expect(toHex(ipv4ToMapped('10.8.0.2') ?? new Uint8Array(0))).toBe('00000000000000000000ffff0a080002')
    expect(mappedToIpv4(fromHex('00000000000000000000ffff00000000'))).toBe('0.0.0.0')
    expect(mappedToIpv4(fromHex('00000000000000000000ffffcb007107'))).toBe('203.0.113.7')
  })

  it('checks all 96 prefix bits, not just the ffff (§5)', () => {
    expect(isIpv4Mapped(fromHex('00000000000000000000ffff0a080002'))).toBe(true)
    expect(isIpv4Mapped(fromHex('00000000000000010000ffff0a080002'))).toBe(false)
    expect(isIpv4Mapped(fromHex('10000000000000000000ffff0a080002'))).toBe(false)
    expect(mappedToIpv4(fromHex('00000000000000000000fffe0a080002'))).toBeNull()
    expect(isIpv4Mapped(new Uint8Array(4))).toBe(false)
  })

  it.each([
    ['::', '00000000000000000000000000000000'],
    ['::1', '00000000000000000000000000000001'],
    ['fd42:42:42::2', 'fd420042004200000000000000000002'],
    ['2001:db8::1:0:0:1', '20010db8000000000001000000000001'],
    ['2001:db8:0:1:1:1:1:1', '20010db8000000010001000100010001'],
    ['::ffff:10.8.0.2', '00000000000000000000ffff0a080002'],
    ['fe80::', 'fe800000000000000000000000000000'],
  ])('parses and canonically formats %s', (text, bytes) => {
    expect(toHex(parseIpv6(text) ?? new Uint8Array(0))).toBe(bytes)
    expect(formatIpv6(fromHex(bytes))).toBe(text)
  })

  it('formats per RFC 5952 (lower case, first longest run, no single-group ::)', () => {
    expect(formatIpv6(fromHex('20010DB8000000000001000000000001'))).toBe('2001:db8::1:0:0:1')
    expect(formatIpv6(fromHex('20010db8000000010001000100010001'))).toBe('2001:db8:0:1:1:1:1:1')
    expect(parseIpv6('2001:DB8::1')).toEqual(parseIpv6('2001:db8::1'))
    expect(parseIpv6('0:0:0:0:0:ffff:1.2.3.4')).toEqual(ipv4ToMapped('1.2.3.4'))
    expect(formatIpv6(new Uint8Array(3))).toBe('')
  })

  it.each([
    '',
    ':',
    ':::',
    '1::2::3',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7',
    '12345::',
    'g::',
    '1:2:3:4:5:6:7::8',
    '::1.2.3',
    '1.2.3.4::',
    '::ffff:1.2.3.4:5',
    'fe80::1%eth0',
  ])('rejects IPv6 text %j', (text) => {
    expect(parseIpv6(text)).toBeNull()
  })

  it.each(['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1.2.3.-4', ' 1.2.3.4', '1.2.3.4 ', 'a.b.c.d'])('rejects IPv4 text %j', (text) => {
    expect(parseIpv4(text)).toBeNull()
    expect(ipv4ToMapped(text)).toBeNull()
  })

  it('parsePcpAddress / formatPcpAddress pick the family', () => {
    expect(formatPcpAddress(parsePcpAddress('198.51.100.9') ?? new Uint8Array(0))).toBe('198.51.100.9')
    expect(formatPcpAddress(parsePcpAddress('2001:db8::7') ?? new Uint8Array(0))).toBe('2001:db8::7')
    expect(parsePcpAddress('nope')).toBeNull()
  })
})

// ---------------------------------------------------------------------------------------------
// Fuzzing: decode never throws; any reply is a valid PCP error response
// ---------------------------------------------------------------------------------------------

describe('PCP decode fuzzing', () => {
  /** Option-shaped bytes whose declared length may lie. */
  const optionArb = fc
    .tuple(
      fc.oneof(fc.constantFrom(1, 2, 3, 0x80, 0xff), fc.integer({ min: 0, max: 255 })),
      fc.oneof(fc.uint8Array({ maxLength: 24 }), fc.constantFrom(new Uint8Array(0), new Uint8Array(16), new Uint8Array(20))),
      // -1: the true data length (well-formed framing); otherwise a possibly lying length.
      fc.oneof({ arbitrary: fc.constant(-1), weight: 3 }, { arbitrary: fc.integer({ min: 0, max: 0xffff }), weight: 1 }),
    )
    .map(([code, data, declared]) => {
      const len = declared === -1 ? data.byteLength : declared
      const out = new Uint8Array(4 + Math.ceil(data.byteLength / 4) * 4)
      dv(out).setUint8(0, code)
      dv(out).setUint16(2, len)
      out.set(data, 4)
      return out
    })

  /** A v2 request head (24, 60 or 80 bytes of a valid packet, opcode possibly changed) + options. */
  const structuredArb = fc
    .tuple(
      fc.constantFrom(ANNOUNCE_REQ, LT_MAP, BTC_MAP, PEER_REQ),
      fc.oneof({ arbitrary: fc.constantFrom(0, 1, 2), weight: 4 }, { arbitrary: fc.integer({ min: 0, max: 255 }), weight: 1 }),
      fc.array(optionArb, { maxLength: 4 }),
      fc.oneof({ arbitrary: fc.constant(0), weight: 4 }, { arbitrary: fc.integer({ min: -3, max: 3 }), weight: 1 }),
    )
    .map(([head, op, opts, trim]) => {
      const full = concat(withByte(head, 1, op), ...opts)
      return trim < 0 ? full.subarray(0, Math.max(0, full.byteLength + trim)) : concat(full, new Uint8Array(trim))
    })

  const packetArb = fc.oneof(
    fc.uint8Array({ maxLength: 1200 }),
    fc
      .tuple(fc.constantFrom(0, 1, 2, 3, 255), fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 1150 }))
      .map(([v, op, tail]) => concat(Uint8Array.of(v, op), tail)),
    structuredArb,
  )

  it('never throws on 20,000 seeded packets; every reply is a valid PCP error response', () => {
    let answered = 0
    let decoded = 0
    fc.assert(
      fc.property(packetArb, fc.nat({ max: 0xffffffff }), (buf, epoch) => {
        const d = decodePcpRequest(buf, epoch)
        decodePcpResponse(buf)
        if (d.ok) {
          decoded++
          expect(toHex(d.value.raw)).toBe(toHex(buf))
          expect([0, 1, 2]).toContain(d.value.opcode)
          return
        }
        if (d.reply === null) {
          expect(d.result).toBeNull()
          return
        }
        answered++
        const r = dv(d.reply)
        expect(d.reply).toBeInstanceOf(Uint8Array)
        expect(d.reply.byteLength % 4).toBe(0)
        expect(d.reply.byteLength).toBeGreaterThanOrEqual(24)
        expect(d.reply.byteLength).toBeLessThanOrEqual(1100)
        expect(r.getUint8(0)).toBe(2)
        expect(r.getUint8(1) & 0x80).toBe(0x80)
        expect(r.getUint8(3)).toBe(d.result)
        expect(r.getUint32(4)).toBe(pcpErrorLifetime(d.result ?? 0))
        expect(r.getUint32(8)).toBe(epoch)
      }),
      { seed: 0x5eed, numRuns: 20_000 },
    )
    // The generators must reach both outcomes, or the loop proves little.
    expect(answered).toBeGreaterThan(1000)
    expect(decoded).toBeGreaterThan(100)
  })
})
