import { readFileSync } from 'node:fs'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { isWgKey, parseWgDump } from '../../../src/wireguard/wg-dump.js'

const fixture = (name: string): string => readFileSync(new URL(`../../fixtures/wg/${name}`, import.meta.url), 'utf8')

describe('parseWgDump on real wireguard-go captures', () => {
  it('parses the server side: interface line and three peers, without keeping secrets', () => {
    const r = parseWgDump(fixture('wireguard-go-0.0.20220316-server.dump'))
    expect(r).toEqual({
      ok: true,
      value: {
        iface: { hasPrivateKey: true, publicKey: 'Ndf6B/5QSMEw9Idkbuzb/adTZ/YcB/nS3Em8xsMytRI=', listenPort: 51820, fwmark: 0x4d2 },
        peers: [
          {
            publicKey: 'qbg3cFnfc+/v1QzjyW72aQZxJfy5uxk4H5H1KJtz3RQ=',
            hasPresharedKey: true,
            endpoint: '192.0.2.2:51821',
            allowedIps: ['10.8.0.2/32', 'fd00::2/128'],
            latestHandshake: 1795660649,
            rxBytes: 180,
            txBytes: 92,
            persistentKeepalive: null,
          },
          {
            publicKey: 'hBiRc5/bSoYVl6AsunOuN7+lQDjplQDETqv/Pb8ns0Q=',
            hasPresharedKey: false,
            endpoint: '192.0.2.9:51820',
            allowedIps: ['10.8.0.3/32'],
            latestHandshake: 0,
            rxBytes: 0,
            txBytes: 148,
            persistentKeepalive: 25,
          },
          {
            publicKey: '9xUz2Sxx5le/c9bWwxTBx5/oxbufAi9+w3j7izV52Sw=',
            hasPresharedKey: false,
            endpoint: null,
            allowedIps: ['10.8.0.4/32', '192.168.50.0/24'],
            latestHandshake: 0,
            rxBytes: 0,
            txBytes: 0,
            persistentKeepalive: null,
          },
        ],
      },
    })
    expect(JSON.stringify(r)).not.toContain('QH1ru3wD0YUvKzST5SsjoDkOqWMbHKSYP0bspGpYgFw=') // private key
    expect(JSON.stringify(r)).not.toContain('QfKh5DAYM0GBROgL93d6TQoODM2SbxL5oRhUZ50N82k=') // preshared key
  })

  it('parses the client side (fwmark off, keepalive 25)', () => {
    const r = parseWgDump(fixture('wireguard-go-0.0.20220316-client.dump'))
    expect(r.ok && r.value.iface).toEqual({ hasPrivateKey: true, publicKey: 'qbg3cFnfc+/v1QzjyW72aQZxJfy5uxk4H5H1KJtz3RQ=', listenPort: 51821, fwmark: null })
    expect(r.ok && r.value.peers.map((p) => [p.allowedIps, p.persistentKeepalive, p.rxBytes, p.txBytes])).toEqual([[['10.8.0.0/24'], 25, 92, 180]])
  })

  it('parses an interface with no key and no peers', () => {
    expect(parseWgDump(fixture('wireguard-go-0.0.20220316-empty.dump'))).toEqual({
      ok: true,
      value: { iface: { hasPrivateKey: false, publicKey: null, listenPort: 39281, fwmark: null }, peers: [] },
    })
  })

  it('accepts CRLF and a missing final newline', () => {
    const text = fixture('wireguard-go-0.0.20220316-server.dump')
    expect(parseWgDump(text.replace(/\n/g, '\r\n'))).toEqual(parseWgDump(text))
    expect(parseWgDump(text.trimEnd())).toEqual(parseWgDump(text))
  })
})

describe('parseWgDump on bad input', () => {
  const server = fixture('wireguard-go-0.0.20220316-server.dump').split('\n')
  const iface = server[0]!
  const peer = server[1]!
  const withPeer = (line: string): string => `${iface}\n${line}\n`
  const swap = (i: number, v: string): string =>
    withPeer(
      peer
        .split('\t')
        .map((f, j) => (j === i ? v : f))
        .join('\t'),
    )

  it.each([
    ['empty', '', 1, /empty output/],
    ['wg show all dump (extra ifname column)', `wg0\t${iface}\n`, 1, /expected 4/],
    ['bad listen port', iface.replace('51820', '70000'), 1, /listen port/],
    ['bad fwmark', iface.replace('0x4d2', 'on'), 1, /fwmark/],
    ['bad private key', iface.replace(/^\S+/, 'nope'), 1, /private key/],
    ['short peer line', withPeer('abc\tdef'), 2, /expected 8/],
    ['bad peer key', swap(0, 'x'.repeat(44)), 2, /public key/],
    ['key with non-zero padding bits', swap(0, 'qbg3cFnfc+/v1QzjyW72aQZxJfy5uxk4H5H1KJtz3RR='), 2, /public key/],
    ['bad preshared key', swap(1, 'secret'), 2, /preshared key/],
    ['bad endpoint', swap(2, 'example.com'), 2, /endpoint/],
    ['bad allowed ips', swap(3, '10.8.0.2'), 2, /allowed IPs/],
    ['negative handshake', swap(4, '-1'), 2, /handshake/],
    ['bad counter', swap(5, '1e3'), 2, /counters/],
    ['bad keepalive', swap(7, 'on'), 2, /keepalive/],
  ])('%s', (_name, text, line, error) => {
    const r = parseWgDump(text)
    expect(r.ok).toBe(false)
    if (!r.ok) {
      expect(r.line).toBe(line)
      expect(r.error).toMatch(error)
    }
  })

  it('accepts an IPv6 endpoint and a decimal fwmark', () => {
    const r = parseWgDump(swap(2, '[2001:db8::1]:51820').replace('0x4d2', '1234'))
    expect(r.ok && [r.value.iface.fwmark, r.value.peers[0]!.endpoint]).toEqual([1234, '[2001:db8::1]:51820'])
  })

  it('never throws on arbitrary text', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom('\t', '\n', '(', ')', 'none', 'off', '0', '1', 'A', '=', '/', ':', '.', ',', 'x') }), (s) => {
        const r = parseWgDump(s)
        expect(typeof r.ok).toBe('boolean')
      }),
      { seed: 4, numRuns: 2000 },
    )
  })

  it('isWgKey checks length, alphabet and padding', () => {
    expect(isWgKey('qbg3cFnfc+/v1QzjyW72aQZxJfy5uxk4H5H1KJtz3RQ=')).toBe(true)
    expect(isWgKey('qbg3cFnfc+/v1QzjyW72aQZxJfy5uxk4H5H1KJtz3RQ')).toBe(false)
    expect(isWgKey('qbg3cFnfc-_v1QzjyW72aQZxJfy5uxk4H5H1KJtz3RQ=')).toBe(false)
  })
})
