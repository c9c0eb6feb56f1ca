/** Starts the real daemon in-process for unit tests: memory driver, fake clock, fake WireGuard peers, loopback UDP. */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseConfig } from '../../src/config/load.js'
import type { ConfigInput } from '../../src/config/schema.js'
import { startDaemon, type Daemon, type Deps } from '../../src/daemon.js'
import { MemoryDriver } from '../../src/drivers/memory.js'
import { silentLogger } from '../../src/log.js'
import { FakeClock } from '../../src/core/clock.js'
import { noFlows } from '../../src/drivers/flows.js'
import type { Peer, PeerSource } from '../../src/wireguard/peers.js'
import { TestClient } from './natpmp-client.js'

/** Loopback stands in for the tunnel: the daemon "is" 127.0.0.1/8, peers are 127.0.0.2 and .3. */
export const A = '127.0.0.2'
export const B = '127.0.0.3'
export const KEY_A = 'qbg3cFnfc+/v1QzjyW72aQZxJfy5uxk4H5H1KJtz3RQ='
export const KEY_B = 'hBiRc5/bSoYVl6AsunOuN7+lQDjplQDETqv/Pb8ns0Q='
export const PUBLIC = '198.51.100.1'

export const peer = (publicKey: string, address: string, latestHandshake: number): Peer => ({
  publicKey,
  hasPresharedKey: false,
  endpoint: '192.0.2.9:51820',
  allowedIps: [`${address}/32`],
  latestHandshake,
  rxBytes: 0,
  txBytes: 0,
  persistentKeepalive: null,
})

/**
 * Peers a test can change: set `list` and call daemon.refreshPeers(). Keys in `alive` handshake
 * anew at every read (as a peer with traffic does); the others keep the handshake in `list`.
 */
export class FakePeers implements PeerSource {
  list: Peer[]
  alive = new Set<string>()
  private reads = 0
  constructor(private readonly now: () => number) {
    const t = Math.floor(now() / 1000)
    this.list = [peer(KEY_A, A, t), peer(KEY_B, B, t)]
  }
  refresh(): Promise<Peer[]> {
    this.reads++
    const hs = Math.floor(this.now() / 1000) + this.reads
    return Promise.resolve(this.list.map((p) => (this.alive.has(p.publicKey) ? { ...p, latestHandshake: hs } : p)))
  }
}

/** A FakeClock whose wall time is `wall.t`, which tests move by hand (a jump, not a duration). */
export class WallClock extends FakeClock {
  constructor(
    t: number,
    private readonly w: { t: number },
  ) {
    super(t)
  }
  override wall(): number {
    return this.w.t
  }
}

export interface TestDaemon {
  daemon: Daemon
  driver: MemoryDriver
  clock: FakeClock
  peers: FakePeers
  stateFile: string
  /** Wall clock seen by the daemon (unix ms); tests move it with `wall.t`. */
  wall: { t: number }
  a: TestClient
  b: TestClient
  /** Closes clients and the daemon (without tearing the memory driver down unless asked). */
  stop(opts?: { teardown?: boolean }): Promise<void>
}

export async function startTestDaemon(
  over: ConfigInput = {},
  deps: Partial<Deps> = {},
  reuse?: { stateFile?: string; driver?: MemoryDriver; wall?: { t: number } },
): Promise<TestDaemon> {
  const stateFile = reuse?.stateFile ?? join(mkdtempSync(join(tmpdir(), 'wgpmp-test-')), 'state.json')
  const config = parseConfig({ port_forward_enabled: true, wg_address_v4: '127.0.0.1/8', state_file: stateFile, ...over })
  const driver = reuse?.driver ?? new MemoryDriver()
  const wall = reuse?.wall ?? { t: Date.UTC(2026, 10, 26, 12) }
  const clock = new WallClock(5_000, wall)
  const peers = new FakePeers(() => wall.t)
  const daemon = await startDaemon(config, {
    driver,
    clock,
    peers,
    log: silentLogger(),
    listen: { host: '127.0.0.1', port: 0 },
    publicAddress: PUBLIC,
    reservedPorts: [51820],
    wgEasyNames: new Map(),
    listeningPorts: () => Promise.resolve({ tcp: new Set(), udp: new Set() }),
    flows: noFlows,
    ...deps,
  })
  const a = await TestClient.open(A, daemon.udpAddress!)
  const b = await TestClient.open(B, daemon.udpAddress!)
  return {
    daemon,
    driver,
    clock,
    peers,
    stateFile,
    wall,
    a,
    b,
    async stop(opts) {
      a.close()
      b.close()
      await daemon.close(opts)
    },
  }
}
