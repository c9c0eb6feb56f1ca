/**
 * WireGuard peers as wgpmp clients: where they come from (PeerSource, `wg show <if> dump`), what
 * they are called (config or wg-easy), and how they change over time (PeerTracker, pure and clocked).
 */
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { WgpmpError } from '../core/errors.js'
import type { Exec } from '../core/exec.js'
import { parseCidr4, parseCidr6 } from '../core/ip.js'
import type { Clock } from '../core/clock.js'
import { parseWgDump, type WgPeerInfo } from './wg-dump.js'

/** One peer of the interface, as last read from WireGuard. */
export type Peer = WgPeerInfo

/** Reads the peers of one interface now. Rejects with a WgpmpError if WireGuard cannot be asked. */
export interface PeerSource {
  refresh(): Promise<Peer[]>
}

/** PeerSource over `wg show <ifname> dump` (needs CAP_NET_ADMIN, like `wg` itself). */
export class WgPeerSource implements PeerSource {
  private readonly exec: Exec
  private readonly ifname: string
  constructor(opts: { exec: Exec; ifname: string }) {
    this.exec = opts.exec
    this.ifname = opts.ifname
  }

  /** Rejects with WGPMP_WG_FAILED when `wg` fails (interface missing, no permission) or prints something unparsable. */
  async refresh(): Promise<Peer[]> {
    const r = await this.exec('wg', ['show', this.ifname, 'dump'])
    if (r.exitCode !== 0) {
      throw new WgpmpError('WGPMP_WG_FAILED', `wg show ${this.ifname} dump: exit ${r.exitCode}: ${r.stderr.trim() || 'no output'}`)
    }
    const d = parseWgDump(r.stdout)
    if (!d.ok) throw new WgpmpError('WGPMP_WG_FAILED', `wg show ${this.ifname} dump: line ${d.line}: ${d.error}`)
    return [...d.value.peers]
  }
}

// --- identity ---------------------------------------------------------------------------------

/**
 * The client id: base64url of the first 9 bytes of sha256(raw 32-byte public key), 12 characters
 * (72 bits: collision-free for any realistic peer count). Stable as long as the key is, URL-safe,
 * and reveals nothing usable about the key. A string that is not valid base64 is hashed as text.
 */
export function clientId(publicKey: string): string {
  const raw = Buffer.from(publicKey, 'base64')
  const input = raw.length === 32 ? raw : Buffer.from(publicKey, 'utf8')
  return createHash('sha256').update(input).digest().subarray(0, 9).toString('base64url')
}

/** A string shaped like a client id (used to tell ids from public keys in config keys). */
export const isClientId = (s: string): boolean => /^[A-Za-z0-9_-]{12}$/.test(s)

/**
 * The peer's tunnel address(es): its allowed IPs that are single hosts, IPv4 /32s first, then
 * IPv6 /128s (canonical text), each in dump order. Subnets routed through the peer (e.g. a LAN
 * behind it) are not its address. Empty if none.
 */
export function addressOf(peer: Pick<Peer, 'allowedIps'>): string[] {
  const v4: string[] = []
  const v6: string[] = []
  for (const c of peer.allowedIps) {
    if (!c.includes('/')) continue
    const p4 = parseCidr4(c)
    if (p4 && p4.prefix === 32) v4.push(p4.address)
    const p6 = c.includes(':') ? parseCidr6(c) : null
    if (p6 && p6.prefix === 128) v6.push(p6.address)
  }
  return [...v4, ...v6]
}

// --- names ------------------------------------------------------------------------------------

/** Display names by public key. */
export type NameMap = ReadonlyMap<string, string>

/**
 * Names from the config's `clients` object, whose keys are public keys or client ids. Returns a
 * lookup by public key; entries without a name are skipped.
 */
export function configNames(clients: Readonly<Record<string, { readonly name?: string | undefined }>>): (publicKey: string) => string | null {
  const byKeyOrId = new Map<string, string>()
  for (const [k, v] of Object.entries(clients)) if (v.name) byKeyOrId.set(k, v.name)
  return (publicKey) => byKeyOrId.get(publicKey) ?? byKeyOrId.get(clientId(publicKey)) ?? null
}

/**
 * Where wg-easy v14 (the Node.js release line, `WG_PATH` default /etc/wireguard/) keeps its clients:
 * `{ "server": {...}, "clients": { "<uuid>": { "id", "name", "address", "publicKey", "enabled", ... } } }`.
 * wg-easy v15 moved to SQLite and is not read.
 */
export const WG_EASY_V14_PATH = '/etc/wireguard/wg0.json'

/**
 * Parses a wg-easy v14 wg0.json into publicKey -> name. Returns null if the text is not that
 * shape (not JSON, no `clients` object); malformed individual entries are skipped.
 */
export function parseWgEasyClients(text: string): Map<string, string> | null {
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch {
    return null
  }
  const clients = (doc as { clients?: unknown } | null)?.clients
  if (typeof clients !== 'object' || clients === null || Array.isArray(clients)) return null
  const out = new Map<string, string>()
  for (const c of Object.values(clients as Record<string, unknown>)) {
    if (typeof c !== 'object' || c === null) continue
    const { publicKey, name } = c as { publicKey?: unknown; name?: unknown }
    if (typeof publicKey === 'string' && typeof name === 'string' && name.trim() !== '') out.set(publicKey, name.trim())
  }
  return out
}

/**
 * Reads wg-easy's client names from path (default WG_EASY_V14_PATH). A missing file is the normal
 * case on hosts without wg-easy: empty map, no error. An unreadable or malformed file: empty map
 * and `problem` set, so the caller can log it once.
 */
export async function readWgEasyNames(
  path: string = WG_EASY_V14_PATH,
  read: (p: string) => Promise<string> = (p) => readFile(p, 'utf8'),
): Promise<{ names: Map<string, string>; problem: string | null }> {
  let text: string
  try {
    text = await read(path)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    return { names: new Map(), problem: code === 'ENOENT' ? null : `${path}: ${(e as Error).message}` }
  }
  const names = parseWgEasyClients(text)
  return names ? { names, problem: null } : { names: new Map(), problem: `${path}: not a wg-easy v14 client list` }
}

// --- tracking ---------------------------------------------------------------------------------

/**
 * Default for `peer_disconnect_seconds`: 300 s = REJECT_AFTER_TIME (180 s) + REKEY_AFTER_TIME (120 s).
 * A peer that sends anything (a NAT-PMP renewal, a persistent keepalive, app traffic) completes a new
 * handshake at least every REKEY_AFTER_TIME (120 s); 180 s after its last handshake its keys are
 * rejected and nothing can flow (WireGuard paper §6.1, messages.h). The extra 120 s is one full missed
 * rekey cycle, plus retries (REKEY_TIMEOUT 5 s) and our refresh interval, so a live peer that is merely
 * slow is never dropped.
 */
export const DEFAULT_PEER_DISCONNECT_SECONDS = 300
/** Below REJECT_AFTER_TIME a healthy peer between two handshakes would look disconnected. */
export const MIN_PEER_DISCONNECT_SECONDS = 180

/** A peer as `wg show dump` gave it (but whether it has a preshared key), with what wgpmp knows of it. */
export interface TrackedPeer extends Omit<Peer, 'hasPresharedKey'> {
  readonly id: string
  readonly name: string | null
  /** Tunnel addresses (addressOf): IPv4 first, then IPv6. */
  readonly addresses: readonly string[]
  /** A handshake within the disconnect time. */
  readonly connected: boolean
}

export type PeerEvent =
  | { readonly type: 'added'; readonly peer: TrackedPeer }
  | { readonly type: 'removed'; readonly peer: TrackedPeer }
  /** Its last handshake is older than the disconnect time: remove its NAT-PMP forwards, keep static ones. */
  | { readonly type: 'disconnected'; readonly peer: TrackedPeer; readonly idleSeconds: number }
  | { readonly type: 'reconnected'; readonly peer: TrackedPeer }
  /** Its IPv4 tunnel addresses changed (allowed IPs edited): forwards to `previous` must go. */
  | { readonly type: 'addresses-changed'; readonly peer: TrackedPeer; readonly previous: readonly string[] }

export interface PeerTrackerOptions {
  /** Monotonic time for ages; its wall() for the handshake times (which are wall time). */
  clock: Clock
  disconnectSeconds?: number
  /** Display name for a public key, or null. Asked once, when the peer first appears. */
  nameOf?: (publicKey: string) => string | null
}

interface State {
  peer: TrackedPeer
  /** Clock ms of the latest handshake, anchored when the handshake value last changed; null = never. */
  handshakeAt: number | null
}

/**
 * Diffs successive peer snapshots into events. No timers and no I/O: call update() with each
 * refresh. Handshake age is measured on the monotonic clock from the moment a new handshake value
 * is first seen (its wall-clock age at that moment is subtracted once), so a wall-clock step
 * between refreshes never disconnects anyone.
 */
export class PeerTracker {
  private readonly clock: Clock
  private readonly disconnectMs: number
  private readonly nameOf: (publicKey: string) => string | null
  private readonly byKey = new Map<string, State>()
  private readonly byAddress = new Map<string, string>() // address -> public key
  private readonly byId = new Map<string, string>() // client id -> public key

  constructor(opts: PeerTrackerOptions) {
    this.clock = opts.clock
    this.disconnectMs = (opts.disconnectSeconds ?? DEFAULT_PEER_DISCONNECT_SECONDS) * 1000
    this.nameOf = opts.nameOf ?? (() => null)
  }

  /**
   * Takes a full snapshot (every peer of the interface) and returns what changed since the last
   * one, removals first. An empty snapshot removes everyone. Duplicate keys: the last line wins.
   * The first call reports every peer as 'added' (with `connected` set); a peer that is already
   * idle is not also reported 'disconnected'.
   */
  update(snapshot: readonly Peer[]): PeerEvent[] {
    const now = this.clock.now()
    const wall = this.clock.wall() / 1000
    const events: PeerEvent[] = []
    const seen = new Map(snapshot.map((p) => [p.publicKey, p]))
    for (const [key, s] of this.byKey) {
      if (seen.has(key)) continue
      this.byKey.delete(key) // deleting the current entry is safe while iterating a Map
      this.forget(s.peer)
      events.push({ type: 'removed', peer: s.peer })
    }
    for (const p of seen.values()) {
      const prev = this.byKey.get(p.publicKey)
      let handshakeAt = prev?.handshakeAt ?? null
      // Issue 10 §4: 0 after a handshake was seen means the interface was restarted (wg-quick
      // down/up, wg-easy's restart), not that the peer left: its age keeps counting from the last
      // handshake seen, so a peer that is still configured keeps its leases through the restart.
      if (p.latestHandshake === 0) handshakeAt = prev?.handshakeAt ?? null
      else if (!prev || prev.peer.latestHandshake !== p.latestHandshake) handshakeAt = now - Math.max(0, wall - p.latestHandshake) * 1000
      const connected = handshakeAt !== null && now - handshakeAt <= this.disconnectMs
      // A known peer keeps its id and name, and its addresses while its allowed IPs stay the same:
      // a refresh of thousands of peers then hashes and parses nothing (it ran every few seconds).
      const sameIps = prev !== undefined && sameList(prev.peer.allowedIps, p.allowedIps)
      const peer: TrackedPeer = {
        id: prev ? prev.peer.id : clientId(p.publicKey),
        publicKey: p.publicKey,
        name: prev ? prev.peer.name : this.nameOf(p.publicKey),
        addresses: sameIps ? prev.peer.addresses : addressOf(p),
        endpoint: p.endpoint,
        allowedIps: p.allowedIps,
        latestHandshake: p.latestHandshake,
        rxBytes: p.rxBytes,
        txBytes: p.txBytes,
        persistentKeepalive: p.persistentKeepalive,
        connected,
      }
      this.byKey.set(p.publicKey, { peer, handshakeAt })
      if (!sameIps) {
        if (prev) this.forget(prev.peer)
        this.byId.set(peer.id, peer.publicKey)
        for (const a of peer.addresses) this.byAddress.set(a, peer.publicKey)
      }
      if (!prev) {
        events.push({ type: 'added', peer })
        continue
      }
      if (!sameList(prev.peer.addresses, peer.addresses)) events.push({ type: 'addresses-changed', peer, previous: prev.peer.addresses })
      if (prev.peer.connected && !connected) {
        events.push({ type: 'disconnected', peer, idleSeconds: handshakeAt === null ? Infinity : Math.floor((now - handshakeAt) / 1000) })
      } else if (!prev.peer.connected && connected) events.push({ type: 'reconnected', peer })
    }
    return events
  }

  /** Every peer from the last snapshot, in snapshot order. */
  peers(): TrackedPeer[] {
    return [...this.byKey.values()].map((s) => s.peer)
  }

  /** The peer whose tunnel address this is (for "is this NAT-PMP sender a client?"), or undefined. */
  peerByAddress(address: string): TrackedPeer | undefined {
    const k = this.byAddress.get(address)
    return k === undefined ? undefined : this.byKey.get(k)?.peer
  }

  /** The peer with this client id, or undefined. */
  peerById(id: string): TrackedPeer | undefined {
    const k = this.byId.get(id)
    return k === undefined ? undefined : this.byKey.get(k)?.peer
  }

  /**
   * Asks nameOf again for every known peer (the name files changed: a client renamed or added in
   * wg-easy) and returns the peers whose name changed.
   */
  renamePeers(): TrackedPeer[] {
    const renamed: TrackedPeer[] = []
    for (const s of this.byKey.values()) {
      const name = this.nameOf(s.peer.publicKey)
      if (name === s.peer.name) continue
      s.peer = { ...s.peer, name }
      renamed.push(s.peer)
    }
    return renamed
  }

  get connectedCount(): number {
    let n = 0
    for (const s of this.byKey.values()) if (s.peer.connected) n++
    return n
  }

  private forget(p: TrackedPeer): void {
    this.byId.delete(p.id)
    for (const a of p.addresses) if (this.byAddress.get(a) === p.publicKey) this.byAddress.delete(a)
  }
}

const sameList = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((x, i) => x === b[i])
