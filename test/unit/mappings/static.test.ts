import { describe, expect, it } from 'vitest'
import {
  forwardId,
  formatRange,
  formatSpec,
  overlaps,
  parseConfigStaticForwards,
  parseForwardSpec,
  reserveStatic,
  specFromBody,
} from '../../../src/mappings/static.js'
import { FakeSink, spec } from '../../helpers/static.js'

describe('parsing', () => {
  it.each([
    ['8080:80/tcp', 'tcp', [8080, 8080], [80, 80]],
    ['27015-27030/udp', 'udp', [27015, 27030], [27015, 27030]],
    ['443/both', 'both', [443, 443], [443, 443]],
    ['6881', 'both', [6881, 6881], [6881, 6881]],
    ['  1000-1999:31000-31999/TCP ', 'tcp', [1000, 1999], [31000, 31999]],
    ['65535/udp', 'udp', [65535, 65535], [65535, 65535]],
  ])('%s', (text, protocol, ext, int) => {
    expect(parseForwardSpec(text)).toEqual({
      ok: true,
      spec: { protocol, external: { first: ext[0], last: ext[1] }, internal: { first: int[0], last: int[1] } },
    })
  })

  it.each([
    ['', /expected EXT/],
    ['80/sctp', /protocol must be/],
    ['0/tcp', /1\.\.65535/],
    ['65536/tcp', /1\.\.65535/],
    ['30-20/udp', /reversed/],
    ['1000-1010:2000-2005/tcp', /has 6 ports, external_port 1000-1010 has 11/],
    ['80:/tcp', /expected EXT/],
    ['8080-/tcp', /not a port or a range/],
    ['a:b', /expected EXT/],
  ])('rejects %j', (text, error) => {
    const r = parseForwardSpec(text)
    expect(r.ok).toBe(false)
    if (!r.ok) expect(r.error).toMatch(error)
  })

  it('turns API bodies into specs; internal defaults to external', () => {
    expect(specFromBody({ protocol: 'tcp', external_port: 8080, internal_port: 80 })).toEqual({ ok: true, spec: spec('8080:80/tcp') })
    expect(specFromBody({ protocol: 'udp', external_port: '27015-27030' })).toEqual({ ok: true, spec: spec('27015-27030/udp') })
    expect(specFromBody({ protocol: 'udp', external_port: '27015-27030', internal_port: 5 }).ok).toBe(false)
  })

  it('formats, ids and overlaps', () => {
    expect(formatSpec(spec('8080:80/tcp'))).toBe('8080:80/tcp')
    expect(formatSpec(spec('27015-27030/udp'))).toBe('27015-27030/udp')
    expect(formatRange({ first: 5, last: 5 })).toBe(5)
    expect(forwardId(spec('8080:80/tcp'))).toBe('tcp-8080')
    expect(forwardId(spec('27015-27030/both'))).toBe('both-27015-27030')
    expect(overlaps(spec('100-200/tcp'), spec('200-300/both'))).toBe(true)
    expect(overlaps(spec('100-200/tcp'), spec('150/udp'))).toBe(false)
    expect(overlaps(spec('100-200/udp'), spec('201-300/udp'))).toBe(false)
  })

  it('parses config static_forwards keyed by public key or id', () => {
    const r = parseConfigStaticForwards({ KEY: ['8080:80/tcp', { protocol: 'udp', external_port: '5000-5001' }, 'bad'] }, (k) => `id-of-${k}`)
    expect([...r.forwards]).toEqual([['id-of-KEY', [spec('8080:80/tcp'), spec('5000-5001/udp')]]])
    expect(r.problems).toEqual([expect.stringMatching(/^static_forwards\.KEY\[2\]: "bad"/)])
  })
})

describe('reserveStatic', () => {
  it('is all or nothing', () => {
    const sink = new FakeSink()
    sink.held.set('udp/27020', { address: '10.8.0.9', internalPort: 27020, static: false })
    const r = reserveStatic(sink, '10.8.0.2', spec('27015-27030/both'))
    expect(r).toEqual({ ok: false, conflict: { protocol: 'udp', port: 27020, reason: 'taken' } })
    expect(sink.held.size).toBe(1)
  })

  it('maps a range port by port with the internal offset', () => {
    const r = reserveStatic(new FakeSink(), '10.8.0.2', spec('1000-1002:2000-2002/tcp'))
    expect(r.ok && r.changes.map((c) => [c.forward.externalPort, c.forward.internalPort])).toEqual([
      [1000, 2000],
      [1001, 2001],
      [1002, 2002],
    ])
  })
})
