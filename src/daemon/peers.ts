/** Who may ask: the peers' names (config, wg-easy), the tracker of WireGuard peers, and the sync that feeds it. */
import type { PeerEvent } from '../wireguard/peers.js'
import { configNames, PeerTracker, WgPeerSource } from '../wireguard/peers.js'
import { PeerSync } from '../wireguard/peer-sync.js'
import { PeerNames } from '../wireguard/wg-conf.js'
import type { Context } from './deps.js'

export interface PeerDirectory {
  readonly names: PeerNames
  readonly tracker: PeerTracker
}

export async function peerDirectory(ctx: Context): Promise<PeerDirectory> {
  const { config, clock } = ctx
  const names = new PeerNames({
    config: configNames(config.clients),
    fixed: ctx.deps.wgEasyNames,
    confPath: config.wg_config_file ?? `/etc/wireguard/${config.wg_interface}.conf`,
    log: ctx.log,
  })
  await names.poll()
  const tracker = new PeerTracker({
    clock,
    disconnectSeconds: config.peer_disconnect_seconds,
    nameOf: (k) => names.nameOf(k),
  })
  return { names, tracker }
}

/** Reads `wg show` (and re-reads the names when their files change) every peer_refresh_seconds; not started. */
export function peerSync(ctx: Context, dir: PeerDirectory, onEvents: (events: PeerEvent[]) => Promise<void>): PeerSync {
  const { config, log } = ctx
  const wgPeers = ctx.deps.peers ?? new WgPeerSource({ exec: ctx.exec, ifname: config.wg_interface })
  const sync = new PeerSync({
    source: {
      refresh: async () => {
        const peers = await wgPeers.refresh()
        if (await dir.names.poll()) for (const p of dir.tracker.renamePeers()) log.info({ client: p.id, clientName: p.name }, 'peer renamed')
        return peers
      },
    },
    tracker: dir.tracker,
    clock: ctx.clock,
    intervalMs: config.peer_refresh_seconds * 1000,
    log: log.child({ component: 'peers' }),
    onEvents,
  })
  ctx.components.add('peer sync', () => sync.stop())
  return sync
}
