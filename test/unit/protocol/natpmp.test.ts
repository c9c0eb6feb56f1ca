import { describe, expect, it } from 'vitest'
import { Opcode, ResultCode } from '../../../src/protocol/constants.js'
import { decodeRequest, decodeResponse, encodeErrorReply, encodeMapResponse, encodePublicAddressResponse, encodeRequest } from '../../../src/protocol/natpmp.js'

const hex = (s: TemplateStringsArray): Uint8Array => Uint8Array.from(Buffer.from(s.join('').replace(/\s+/g, ''), 'hex'))
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

// Request layouts from libnatpmp natpmp.c (sendpublicaddressrequest / sendnewportmappingrequest),
// as Debian 12's natpmpc 20150609 sends them; see test/fixtures/README.md.
const ADDRESS_REQUEST = hex`00 00`
// natpmpc -g 10.8.0.1 -a 0 51820 udp 3600
const MAP_UDP_51820 = hex`00 01 0000 ca6c 0000 00000e10`
// natpmpc -a 8080 80 tcp 60
const MAP_TCP_80_8080 = hex`00 02 0000 0050 1f90 0000003c`
// gluetun (ProtonVPN loop): UDP, internal 0, suggested external 1, lifetime 60
const GLUETUN_UDP = hex`00 01 0000 0000 0001 0000003c`
// natpmpc -a 0 51820 tcp 0 (delete)
const DELETE_TCP_51820 = hex`00 02 0000 ca6c 0000 00000000`
// @achingbrain/nat-port-mapper: TCP 6881 -> 6881, lifetime 3,600,000 s (a ms constant in a seconds field)
const ACHINGBRAIN = hex`00 02 0000 1ae1 1ae1 0036ee80`
// libtorrent's PCP MAP request starts with version 2
const PCP_FIRST_BYTES = hex`02 01 0000 00000e10 00000000 00000000 0000ffff 0a080002`

describe('decodeRequest', () => {
  it('decodes the address request', () => {
    expect(decodeRequest(ADDRESS_REQUEST)).toEqual({ ok: true, value: { op: Opcode.PublicAddress } })
  })
  it.each([
    ['natpmpc udp 51820', MAP_UDP_51820, Opcode.MapUdp, 51820, 0, 3600],
    ['natpmpc tcp 80->8080', MAP_TCP_80_8080, Opcode.MapTcp, 80, 8080, 60],
    ['gluetun symmetric', GLUETUN_UDP, Opcode.MapUdp, 0, 1, 60],
    ['delete', DELETE_TCP_51820, Opcode.MapTcp, 51820, 0, 0],
    ['3,600,000 s', ACHINGBRAIN, Opcode.MapTcp, 6881, 6881, 3_600_000],
  ])('decodes a map request: %s', (_n, buf, op, internalPort, suggestedExternalPort, lifetimeSeconds) => {
    expect(decodeRequest(buf)).toEqual({ ok: true, value: { op, internalPort, suggestedExternalPort, lifetimeSeconds } })
  })
  it('answers any version but 0 with result 1 and opcode 0 (PCP clients fall back)', () => {
    const d = decodeRequest(PCP_FIRST_BYTES)
    expect(d).toEqual({ ok: false, reply: { op: 0, result: ResultCode.UnsupportedVersion } })
    if (d.ok || !d.reply) throw new Error('unreachable')
    // RFC 6886 erratum 3618 form: 00 80 0001 <epoch>, 8 bytes.
    expect(toHex(encodeErrorReply(d.reply, 0x1234))).toBe('0080000100001234')
  })
  it('answers an unknown opcode with result 5 in 8 bytes', () => {
    const d = decodeRequest(hex`00 03 0000`)
    expect(d).toEqual({ ok: false, reply: { op: 3, result: ResultCode.UnsupportedOpcode } })
    if (d.ok || !d.reply) throw new Error('unreachable')
    expect(toHex(encodeErrorReply(d.reply, 7))).toBe('0083000500000007')
  })
  it.each([
    ['empty', hex``],
    ['one byte', hex`00`],
    ['a response opcode', hex`00 80`],
    ['a map response', hex`00 81 0000 00000001 1f90 1f90 0000003c`],
    ['a truncated map', hex`00 01 0000 ca6c 0000 0000`],
  ])('drops %s', (_n, buf) => {
    expect(decodeRequest(buf)).toEqual({ ok: false, reply: null })
  })
  it('accepts an over-long map request and ignores the excess', () => {
    const d = decodeRequest(hex`00 02 0000 0050 1f90 0000003c deadbeef`)
    expect(d).toEqual({ ok: true, value: { op: 2, internalPort: 80, suggestedExternalPort: 8080, lifetimeSeconds: 60 } })
  })
  it('reads from a view with an offset (Buffer pool slices)', () => {
    const big = new Uint8Array(32)
    big.set(MAP_TCP_80_8080, 7)
    expect(decodeRequest(big.subarray(7, 19))).toEqual(decodeRequest(MAP_TCP_80_8080))
  })
  it('never throws on random input (seeded)', () => {
    let seed = 42
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000
    let answered = 0
    for (let i = 0; i < 20_000; i++) {
      const len = Math.floor(rnd() * 24)
      const b = Uint8Array.from({ length: len }, () => Math.floor(rnd() * 256))
      if (rnd() < 0.5 && len > 0) b[0] = 0
      const d = decodeRequest(b)
      if (!d.ok && d.reply) {
        answered++
        expect(encodeErrorReply(d.reply, 1).byteLength).toBe(8)
      }
    }
    expect(answered).toBeGreaterThan(1000)
  })
})

describe('encode', () => {
  it('public address reply: 12 bytes with the epoch and address', () => {
    expect(toHex(encodePublicAddressResponse(ResultCode.Success, 300, '198.51.100.1'))).toBe('008000000000012cc6336401')
  })
  it('public address error reply carries 0.0.0.0', () => {
    expect(toHex(encodePublicAddressResponse(ResultCode.NetworkFailure, 1, '198.51.100.1'))).toBe('008000030000000100000000')
  })
  it('map reply: 16 bytes, internal port echoed', () => {
    const r = encodeMapResponse({ op: Opcode.MapTcp, result: 0, internalPort: 80, externalPort: 8080, lifetimeSeconds: 3600 }, 5)
    expect(toHex(r)).toBe('0082000000000005' + '00501f9000000e10')
  })
  it('map error reply zeroes port and lifetime but echoes the internal port (RFC 6886 §3.5)', () => {
    const r = encodeMapResponse({ op: Opcode.MapUdp, result: ResultCode.OutOfResources, internalPort: 0, externalPort: 9, lifetimeSeconds: 9 }, 5)
    expect(toHex(r)).toBe('0081000400000005' + '0000000000000000')
  })
  it('round-trips every message kind', () => {
    for (const req of [
      { op: Opcode.PublicAddress } as const,
      { op: Opcode.MapUdp, internalPort: 1, suggestedExternalPort: 65535, lifetimeSeconds: 0xffffffff } as const,
      { op: Opcode.MapTcp, internalPort: 0, suggestedExternalPort: 0, lifetimeSeconds: 0 } as const,
    ]) {
      expect(decodeRequest(encodeRequest(req))).toEqual({ ok: true, value: req })
    }
    expect(decodeResponse(encodePublicAddressResponse(0, 9, '203.0.113.7'))).toEqual({ op: 0, result: 0, epochSeconds: 9, publicV4: '203.0.113.7' })
    expect(decodeResponse(encodeMapResponse({ op: 1, result: 0, internalPort: 5, externalPort: 6, lifetimeSeconds: 7 }, 8))).toEqual({
      op: 1,
      result: 0,
      epochSeconds: 8,
      internalPort: 5,
      externalPort: 6,
      lifetimeSeconds: 7,
    })
    expect(decodeResponse(encodeErrorReply({ op: 0, result: 1 }, 3))).toEqual({ op: 0, result: 1, epochSeconds: 3 })
  })
})
