/**
 * What happens to forwards when peers come and go: a removed peer loses its leases and its static
 * forwards leave the kernel (their definitions stay) and its held ports are released; a disconnected peer loses its leases only;
 * a peer whose addresses changed loses what pointed at the old ones and gets its static forwards
 * on the new ones; an added or reconnected peer gets its static forwards.
 */
import type { Logger } from '../log.js'
import type { PeerEvent } from '../wireguard/peers.js'
import type { Forwarder } from './forwarder.js'

/** The part of the static forwards this policy drives. */
export interface StaticActivation {
  activate(clientId: string): Promise<unknown>
  deactivate(clientId: string, address: string): Promise<unknown>
}

export function peerPolicy(d: {
  forwarder: Forwarder
  statics: StaticActivation
  releaseHolds: (address: string) => void
  log: Logger
}): (events: readonly PeerEvent[]) => Promise<void> {
  return async (events) => {
    for (const ev of events) {
      const p = ev.peer
      d.log.info({ event: ev.type, client: p.id, clientName: p.name, addresses: p.addresses }, 'peer ' + ev.type)
      if (ev.type === 'removed') {
        for (const a of p.addresses) {
          await d.forwarder.withdraw(a, 'peer removed')
          d.releaseHolds(a) // a peer that takes this address later inherits no held port
          await d.statics.deactivate(p.id, a)
        }
      } else if (ev.type === 'disconnected') {
        for (const a of p.addresses) await d.forwarder.withdraw(a, 'peer disconnected') // static forwards stay
      } else if (ev.type === 'addresses-changed') {
        for (const a of ev.previous) {
          await d.forwarder.withdraw(a, 'peer address changed')
          await d.statics.deactivate(p.id, a)
        }
        await d.statics.activate(p.id)
      } else {
        await d.statics.activate(p.id) // added or reconnected
      }
    }
  }
}
