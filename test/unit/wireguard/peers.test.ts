import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import type { Exec } from '../../../src/core/exec.js'
import { FakeClock } from '../../../src/core/clock.js'
import {
  DEFAULT_PEER_DISCONNECT_SECONDS,
  PeerTracker,
  WgPeerSource,
  addressOf,
  clientId,
  configNames,
  isClientId,
  parseWgEasyClients,
  readWgEasyNames,
  type Peer,
} from '../../../src/wireguard/peers.js'
import { isWgpmpError } from '../../../src/core/errors.js'

const fixture = (name: string): string => readFileSync(new URL(`../../fixtures/wg/${name}`, import.meta.url), 'utf8')
const fixturePath = (name: string): string => new URL(`../../fixtures/wg/${name}`, import.meta.url).pathname

const K1 = 'qbg3cFnfc+/v1QzjyW72aQZxJfy5uxk4H5H1KJtz3RQ='
const K2 = 'hBiRc5/bSoYVl6AsunOuN7+lQDjplQDETqv/Pb8ns0Q='
const peer = (publicKey: string, latestHandshake: number, allowedIps = ['10.8.0.2/32']): Peer => ({
  publicKey,
  hasPresharedKey: false,
  endpoint: null,
  allowedIps,
  latestHandshake,
  rxBytes: 0,
  txBytes: 0,
  persistentKeepalive: null,
})

describe('WgPeerSource', () => {
  it('runs `wg show <if> dump` and returns the peers', async () => {
    const calls: unknown[] = []
    const exec: Exec = (file, args) => {
      calls.push([file, ...args])
      return Promise.resolve({ stdout: fixture('wireguard-go-0.0.20220316-server.dump').trimEnd(), stderr: '', exitCode: 0 })
    }
    const peers = await new WgPeerSource({ exec, ifname: 'wg0' }).refresh()
    expect(calls).toEqual([['wg', 'show', 'wg0', 'dump']])
    expect(peers.map((p) => p.publicKey)).toEqual([K1, K2, '9xUz2Sxx5le/c9bWwxTBx5/oxbufAi9+w3j7izV52Sw='])
  })

  it('rejects with WGPMP_WG_FAILED when wg fails or prints garbage', async () => {
    const failing: Exec = () => Promise.resolve({ stdout: '', stderr: 'Unable to access interface: No such device', exitCode: 1 })
    await expect(new WgPeerSource({ exec: failing, ifname: 'wg9' }).refresh()).rejects.toSatisfy(
      (e) => isWgpmpError(e, 'WGPMP_WG_FAILED') && /No such device/.test((e as Error).message),
    )
    const garbage: Exec = () => Promise.resolve({ stdout: 'hello', stderr: '', exitCode: 0 })
    await expect(new WgPeerSource({ exec: garbage, ifname: 'wg0' }).refresh()).rejects.toThrow(/line 1/)
  })
})

describe('identity', () => {
  it('clientId is 12 URL-safe characters, stable, and differs per key', () => {
    const id = clientId(K1)
    expect(id).toMatch(/^[A-Za-z0-9_-]{12}$/)
    expect(clientId(K1)).toBe(id)
    expect(clientId(K2)).not.toBe(id)
    expect(isClientId(id)).toBe(true)
    expect(isClientId(K1)).toBe(false)
    // Golden: base64url(sha256(raw key)[0..9]); changing it would orphan stored static forwards.
    expect(id).toBe('oLCGdaDSDw-O')
  })

  it('addressOf keeps single hosts: IPv4 /32s first, then IPv6 /128s in canonical form', () => {
    expect(addressOf({ allowedIps: ['10.8.0.2/32', 'FD00:0::2/128', '192.168.50.0/24', 'fd00::/64', '10.8.0.9/32'] })).toEqual([
      '10.8.0.2',
      '10.8.0.9',
      'fd00::2',
    ])
    expect(addressOf({ allowedIps: [] })).toEqual([])
  })
})

describe('names', () => {
  it('config names match by public key or client id', () => {
    const name = configNames({ [K1]: { name: 'seedbox' }, [clientId(K2)]: { name: 'phone' }, x: {} })
    expect([name(K1), name(K2), name('9xUz2Sxx5le/c9bWwxTBx5/oxbufAi9+w3j7izV52Sw=')]).toEqual(['seedbox', 'phone', null])
  })

  it('reads a wg-easy v14 wg0.json, skipping malformed entries', async () => {
    const r = await readWgEasyNames(fixturePath('wg-easy-v14-wg0.json'))
    expect(r.problem).toBeNull()
    expect([...r.names]).toEqual([
      [K1, 'seedbox <qbittorrent>'],
      [K2, 'phone'],
    ])
  })

  it('a missing wg-easy file is silent; a malformed one is a problem', async () => {
    expect(await readWgEasyNames('/nonexistent/wg0.json')).toEqual({ names: new Map(), problem: null })
    const bad = await readWgEasyNames('x', () => Promise.resolve('{"server":{}}'))
    expect(bad.names.size).toBe(0)
    expect(bad.problem).toMatch(/not a wg-easy v14 client list/)
    expect(parseWgEasyClients('not json')).toBeNull()
    expect(parseWgEasyClients('{"clients":[]}')).toBeNull()
  })
})

describe('PeerTracker', () => {
  const WALL0 = 1_800_000_000
  const setup = (disconnectSeconds?: number) => {
    const clock = new FakeClock(10_000, WALL0 * 1000)
    const wall = () => clock.wall() / 1000
    const t = new PeerTracker({ clock, nameOf: (k) => (k === K1 ? 'seedbox' : null), ...(disconnectSeconds ? { disconnectSeconds } : {}) })
    return { clock, t, wall }
  }

  it('defaults to 300 s (REJECT_AFTER_TIME 180 + REKEY_AFTER_TIME 120)', () => {
    expect(DEFAULT_PEER_DISCONNECT_SECONDS).toBe(300)
  })

  it('reports every peer as added on the first snapshot, with connected state', () => {
    const { t } = setup()
    const ev = t.update([peer(K1, WALL0 - 10), peer(K2, 0, ['10.8.0.3/32'])])
    expect(ev.map((e) => [e.type, e.peer.name, e.peer.connected, e.peer.addresses])).toEqual([
      ['added', 'seedbox', true, ['10.8.0.2']],
      ['added', null, false, ['10.8.0.3']],
    ])
    expect(t.peerByAddress('10.8.0.3')?.publicKey).toBe(K2)
    expect(t.peerById(clientId(K1))?.publicKey).toBe(K1)
    expect(t.connectedCount).toBe(1)
    expect(t.update([peer(K1, WALL0 - 10), peer(K2, 0, ['10.8.0.3/32'])])).toEqual([])
  })

  it('disconnects after the threshold without a new handshake, and reconnects on one', () => {
    const { clock, t, wall } = setup()
    t.update([peer(K1, WALL0 - 100)])
    clock.advance(200_000) // handshake age 300 s: still connected (<=)
    expect(t.update([peer(K1, WALL0 - 100)])).toEqual([])
    clock.advance(1_000)
    const ev = t.update([peer(K1, WALL0 - 100)])
    expect(ev).toMatchObject([{ type: 'disconnected', idleSeconds: 301, peer: { connected: false } }])
    expect(t.update([peer(K1, WALL0 - 100)])).toEqual([]) // reported once
    expect(t.update([peer(K1, Math.floor(wall()))])).toMatchObject([{ type: 'reconnected', peer: { connected: true } }])
  })

  it('measures age on the monotonic clock, so a wall-clock jump does not disconnect', () => {
    const clock = new FakeClock(0, WALL0 * 1000)
    const t = new PeerTracker({ clock })
    t.update([peer(K1, WALL0 - 5)])
    clock.setWall(clock.wall() + 86_400_000) // NTP step of a day
    clock.advance(2_000)
    expect(t.update([peer(K1, WALL0 - 5)])).toEqual([])
    expect(t.peers()[0]!.connected).toBe(true)
  })

  it('a handshake from the future (clock skew) counts as just now', () => {
    const { t } = setup(180)
    expect(t.update([peer(K1, WALL0 + 3600)])[0]!.peer.connected).toBe(true)
  })

  it('reports removals first and forgets their addresses and ids', () => {
    const { t } = setup()
    t.update([peer(K1, WALL0), peer(K2, WALL0, ['10.8.0.3/32'])])
    const ev = t.update([peer(K2, WALL0, ['10.8.0.3/32'])])
    expect(ev.map((e) => [e.type, e.peer.publicKey])).toEqual([['removed', K1]])
    expect(t.peerByAddress('10.8.0.2')).toBeUndefined()
    expect(t.peerById(clientId(K1))).toBeUndefined()
    expect(t.update([]).map((e) => e.type)).toEqual(['removed'])
    expect(t.peers()).toEqual([])
  })

  it('reports changed tunnel addresses with the previous ones', () => {
    const { t } = setup()
    t.update([peer(K1, WALL0)])
    const ev = t.update([peer(K1, WALL0, ['10.8.0.20/32'])])
    expect(ev).toMatchObject([{ type: 'addresses-changed', previous: ['10.8.0.2'], peer: { addresses: ['10.8.0.20'] } }])
    expect(t.peerByAddress('10.8.0.2')).toBeUndefined()
    expect(t.peerByAddress('10.8.0.20')?.publicKey).toBe(K1)
  })

  it('a refresh of known peers asks for no name again, keeps the lookups, and takes the new counters', () => {
    const asked: string[] = []
    const t = new PeerTracker({ clock: new FakeClock(0, WALL0 * 1000), nameOf: (k) => (asked.push(k), k === K1 ? 'seedbox' : null) })
    t.update([peer(K1, WALL0), peer(K2, WALL0, ['10.8.0.3/32'])])
    for (let i = 1; i <= 3; i++) expect(t.update([{ ...peer(K1, WALL0), rxBytes: i }, peer(K2, WALL0, ['10.8.0.3/32'])])).toEqual([])
    expect(asked).toEqual([K1, K2])
    expect(t.peerByAddress('10.8.0.2')).toMatchObject({ publicKey: K1, name: 'seedbox', rxBytes: 3, id: clientId(K1) })
    expect(t.peerById(clientId(K2))?.addresses).toEqual(['10.8.0.3'])
    // Removed and added again: a new peer, so its name is asked for again.
    t.update([peer(K2, WALL0, ['10.8.0.3/32'])])
    t.update([peer(K1, WALL0), peer(K2, WALL0, ['10.8.0.3/32'])])
    expect(asked).toEqual([K1, K2, K1])
  })

  it('an address moved from one peer to another stays with the new owner', () => {
    const { t } = setup()
    t.update([peer(K1, WALL0), peer(K2, WALL0, ['10.8.0.3/32'])])
    t.update([peer(K2, WALL0, ['10.8.0.2/32']), peer(K1, WALL0, ['10.8.0.9/32'])])
    expect(t.peerByAddress('10.8.0.2')?.publicKey).toBe(K2)
    expect(t.peerByAddress('10.8.0.9')?.publicKey).toBe(K1)
  })
})
