/**
 * LeaseEvents: the one-line helpers the core calls where forwards and clients change. Each builds
 * WgpmpEvents and hands them to an EventSink; none throws, none blocks, none does I/O. Kept apart
 * from the services so that the forwarder (issue 9) can call the same helpers from one place.
 */
import { systemClock, type Clock } from '../core/clock.js'
import type { ForwardChange } from '../core/forward.js'
import type { Lease } from '../core/forward.js'
import type { PeerEvent } from '../wireguard/peers.js'
import type { EventSink, RemovalReason, WgpmpEvent } from './events.js'

export interface Identity {
  readonly id: string
  readonly name: string | null
}

export interface LeaseEventsDeps {
  sink: EventSink
  /** The peer at a tunnel address now, or undefined. */
  peerAt: (address: string) => (Identity & { readonly addresses: readonly string[] }) | undefined
  /** The public address a client's forwards are reached at (see ServiceDeps.publicAddress). */
  publicAddress: (clientAddress: string) => string | null
  /** Its wall() stamps the events (default: the system clock). */
  clock?: Pick<Clock, 'wall'>
}

/** Removes a WireGuard peer's address-changed / removed identities after this many (bounded memory). */
const REMEMBERED = 4096

export class LeaseEvents {
  /** Off until arm(): what a start restores or installs is not news. */
  private armed = false
  /** Identities of peers that left, so that their forwards' removal still names them. */
  private readonly gone = new Map<string, Identity>()
  private readonly clock: Pick<Clock, 'wall'>

  constructor(private readonly d: LeaseEventsDeps) {
    this.clock = d.clock ?? systemClock
  }

  /** From now on, changes are events (call when the daemon has started). */
  arm(): void {
    this.armed = true
  }

  /** A new lease is in the kernel. A renewal (no changes) is not an event. */
  created(l: Lease, changes: readonly unknown[]): void {
    if (changes.length > 0) this.safe(() => this.d.sink.emit(this.ofLease('forward.created', l)))
  }

  /** The kernel refused a new lease's forward (it was undone). */
  refused(l: Lease, changes: readonly unknown[]): void {
    if (changes.length > 0) this.safe(() => this.d.sink.emit(this.ofLease('forward.removed', l, 'kernel-refused')))
  }

  /** Leases left the table and the kernel. */
  removed(leases: readonly Lease[], reason: RemovalReason): void {
    this.safe(() => {
      for (const l of leases) this.d.sink.emit(this.ofLease('forward.removed', l, reason))
    })
  }

  /**
   * Static forwards' ports went in or out of the kernel (StaticForwards' commit): adds are created
   * events; a delete is 'deleted' while its address still belongs to a peer, else 'peer-removed'.
   */
  staticChanges(changes: readonly ForwardChange[]): void {
    this.safe(() => {
      for (const c of changes) {
        const f = c.forward
        const peer = this.d.peerAt(f.internalAddress)
        const who = peer ?? this.gone.get(f.internalAddress)
        const reason: RemovalReason | undefined = c.op === 'add' ? undefined : peer ? 'deleted' : 'peer-removed'
        this.d.sink.emit(
          this.event(
            c.op === 'add' ? 'forward.created' : 'forward.removed',
            who,
            f.internalAddress,
            {
              protocol: f.protocol,
              public_address: this.d.publicAddress(f.internalAddress),
              external_port: f.externalPort,
              internal_port: f.internalPort,
              origin: 'static',
              lifetime_seconds: null,
            },
            reason,
          ),
        )
      }
    })
  }

  /** A peer event: connected / disconnected for people; also remembers who a leaving peer was. */
  peer(ev: PeerEvent): void {
    this.safe(() => {
      const p = ev.peer
      if (ev.type === 'removed' || ev.type === 'addresses-changed') {
        for (const a of ev.type === 'removed' ? p.addresses : ev.previous) this.remember(a, p)
      }
      const type =
        ev.type === 'reconnected' || (ev.type === 'added' && p.connected)
          ? 'client.connected'
          : ev.type === 'disconnected' || (ev.type === 'removed' && p.connected)
            ? 'client.disconnected'
            : null
      if (type) this.d.sink.emit(this.event(type, p, p.addresses[0] ?? null, nothing))
    })
  }

  private remember(address: string, who: Identity): void {
    if (this.gone.size >= REMEMBERED) this.gone.delete(this.gone.keys().next().value as string)
    this.gone.set(address, { id: who.id, name: who.name })
  }

  private ofLease(type: WgpmpEvent['type'], l: Lease, reason?: RemovalReason): WgpmpEvent {
    const who = this.d.peerAt(l.client) ?? this.gone.get(l.client)
    return this.event(
      type,
      who,
      l.client,
      {
        protocol: l.protocol,
        public_address: this.d.publicAddress(l.client),
        external_port: l.externalPort,
        internal_port: l.targetPort,
        origin: l.origin,
        lifetime_seconds: l.origin === 'static' ? null : l.lifetimeSeconds,
      },
      reason,
    )
  }

  private event(type: WgpmpEvent['type'], who: Identity | undefined, address: string | null, f: ForwardFields, reason?: RemovalReason): WgpmpEvent {
    return {
      type,
      time: new Date(this.clock.wall()).toISOString(),
      client_id: who?.id ?? address ?? '?',
      client_name: who?.name ?? null,
      client_address: address,
      ...f,
      ...(reason ? { reason } : {}),
    }
  }

  /** Never lets a notification problem reach the request path. */
  private safe(fn: () => void): void {
    if (!this.armed) return
    try {
      fn()
    } catch {
      // An EventSink must not throw; if one does, the event is lost, never the request.
    }
  }
}

type ForwardFields = Pick<WgpmpEvent, 'protocol' | 'public_address' | 'external_port' | 'internal_port' | 'origin' | 'lifetime_seconds'>
const nothing: ForwardFields = { protocol: null, public_address: null, external_port: null, internal_port: null, origin: null, lifetime_seconds: null }
