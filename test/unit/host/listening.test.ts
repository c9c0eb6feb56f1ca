/** /proc/net parsing against captures from a throwaway namespace (test/fixtures/proc/capture.sh). */
import { mkdtemp, mkdir, copyFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { readFileSync } from 'node:fs'
import { afterEach, describe, expect, it } from 'vitest'
import { isListening, ListeningPortsCache, listeningPortsIn, parseProcNet, readListeningPorts, type ListeningPorts } from '../../../src/host/listening.js'
import { FakeClock } from '../../../src/core/clock.js'

const FIXTURES = new URL('../../fixtures/proc/', import.meta.url)
const fixture = (name: string): string => readFileSync(new URL(name, FIXTURES), 'utf8')

describe('parseProcNet', () => {
  it('parses a captured /proc/net/tcp (header skipped, hex ports, state)', () => {
    const entries = parseProcNet(fixture('tcp'))
    expect(entries).toHaveLength(3)
    expect(entries[1]).toEqual({ localAddressHex: '0100007F', localPort: 8080, remoteAddressHex: '00000000', remotePort: 0, state: 0x0a })
    expect(entries[2]).toMatchObject({ localPort: 5352, remoteAddressHex: '0100007F', state: 0x05 })
  })

  it('parses IPv6 lines (32-digit addresses)', () => {
    expect(parseProcNet(fixture('tcp6'))).toEqual([
      { localAddressHex: '0'.repeat(32), localPort: 51413, remoteAddressHex: '0'.repeat(32), remotePort: 0, state: 0x0a },
    ])
  })

  it('skips garbage and never throws', () => {
    expect(parseProcNet('')).toEqual([])
    expect(parseProcNet('nonsense\n  0: ZZ:1F90 00000000:0000 0A\n\0\0')).toEqual([])
  })
})

describe('listening ports', () => {
  it('TCP: only LISTEN sockets (the CLOSE_WAIT socket on 5352 counts only through its listener)', () => {
    expect([...listeningPortsIn(fixture('tcp'), 'tcp')].sort((a, b) => a - b)).toEqual([5352, 8080])
    expect([...listeningPortsIn(fixture('tcp6'), 'tcp')]).toEqual([51413])
    const established = '   0: 0100007F:9C41 0100007F:14E8 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0 20 4 30 10 -1\n'
    expect(listeningPortsIn(established, 'tcp').size).toBe(0)
  })

  it('UDP: bound sockets with no remote; a connected socket does not count', () => {
    // udp: 0.0.0.0:51820 unconnected (st 07) and 127.0.0.1:46633 connected to 127.0.0.1:51820 (st 01).
    expect([...listeningPortsIn(fixture('udp'), 'udp')]).toEqual([51820])
    expect([...listeningPortsIn(fixture('udp6'), 'udp')]).toEqual([5353])
  })

  it('port 0 never counts; a remote port alone makes a UDP socket connected', () => {
    const e = { localAddressHex: '00000000', localPort: 0, remoteAddressHex: '00000000', remotePort: 0, state: 7 }
    expect(isListening(e, 'udp')).toBe(false)
    expect(isListening({ ...e, localPort: 9 }, 'udp')).toBe(true)
    expect(isListening({ ...e, localPort: 9, remotePort: 53 }, 'udp')).toBe(false)
    expect(isListening({ ...e, localPort: 9, state: 0x0a }, 'tcp')).toBe(true)
  })
})

describe('readListeningPorts', () => {
  let dir: string | undefined
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true })
    dir = undefined
  })

  it('merges IPv4 and IPv6 by protocol from procRoot/net', async () => {
    dir = await mkdtemp(join(tmpdir(), 'wgpmp-proc-'))
    await mkdir(join(dir, 'net'))
    for (const f of ['tcp', 'tcp6', 'udp', 'udp6']) await copyFile(new URL(f, FIXTURES), join(dir, 'net', f))
    const r = await readListeningPorts(dir)
    expect([...r.tcp].sort((a, b) => a - b)).toEqual([5352, 8080, 51413])
    expect([...r.udp].sort((a, b) => a - b)).toEqual([5353, 51820])
  })

  it('a missing tcp6/udp6 (IPv6 disabled) is not an error; other errors reject', async () => {
    dir = await mkdtemp(join(tmpdir(), 'wgpmp-proc-'))
    await mkdir(join(dir, 'net'))
    await copyFile(new URL('tcp', FIXTURES), join(dir, 'net', 'tcp'))
    await writeFile(join(dir, 'net', 'udp'), '')
    expect(await readListeningPorts(dir)).toEqual({ tcp: new Set([5352, 8080]), udp: new Set() })
    await mkdir(join(dir, 'net', 'udp6')) // a directory: EISDIR
    await expect(readListeningPorts(dir)).rejects.toThrow(/EISDIR/)
  })

  it('reads the real /proc of this process', async () => {
    const r = await readListeningPorts()
    expect(r.tcp).toBeInstanceOf(Set)
    expect(r.udp).toBeInstanceOf(Set)
  })
})

describe('ListeningPortsCache', () => {
  const ports = (tcp: number[], udp: number[] = []): ListeningPorts => ({ tcp: new Set(tcp), udp: new Set(udp) })

  it('rereads only when older than maxAgeMs, sharing one read between concurrent callers', async () => {
    const clock = new FakeClock(0)
    let reads = 0
    const cache = new ListeningPortsCache({ clock, maxAgeMs: 250, read: () => Promise.resolve(ports([++reads * 1000])) })
    expect(cache.has(1000)).toBe(false)
    await Promise.all([cache.refresh(), cache.refresh(), cache.refresh()])
    expect(reads).toBe(1)
    expect(cache.has(1000)).toBe(true)
    clock.advance(249)
    await cache.refresh()
    expect(reads).toBe(1)
    clock.advance(1)
    await cache.refresh()
    expect(reads).toBe(2)
    expect(cache.has(1000)).toBe(false)
    expect(cache.has(2000)).toBe(true)
  })

  it('counts UDP and TCP ports alike; a failed read keeps the last ports and is returned', async () => {
    const clock = new FakeClock(0)
    let fail = false
    const cache = new ListeningPortsCache({
      clock,
      maxAgeMs: 0,
      read: () => (fail ? Promise.reject(new Error('EACCES')) : Promise.resolve(ports([22], [51820]))),
    })
    expect(await cache.refresh()).toBeNull()
    expect(cache.has(22) && cache.has(51820)).toBe(true)
    fail = true
    expect(await cache.refresh()).toEqual(new Error('EACCES'))
    expect(cache.has(51820)).toBe(true)
  })
})
