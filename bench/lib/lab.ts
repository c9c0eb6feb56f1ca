/**
 * The bench's network lab: three namespaces named wgpmp-bench-<random>-{d,l,i}. Nothing outside
 * them is changed.
 *
 *   load (-l)                          daemon (-d)                           internet (-i)
 *   veth0 10.8.0.2/16  <----veth---->  wg0 10.8.0.1/16  (NAT-PMP, 5351)
 *   local 10.8.128.0/17 dev lo         route 10.8.128.0/17 via 10.8.0.2
 *   default via 10.8.0.1               eth0 198.51.100.1/24  <----veth---->  eth0 198.51.100.2/24
 *
 * wg0 is a veth named like a WireGuard interface (no WireGuard needed): NAT-PMP arrives on it, as
 * the daemon's input guard requires. The load namespace owns the whole 10.8.128.0/17 through a
 * `local` route, so the load generator can bind 32,768 client addresses; the daemon reaches them
 * through one gateway (10.8.0.2), so its neighbour table holds one entry, not thousands (which
 * would overflow gc_thresh3 = 1024), just as WireGuard needs no ARP at all. arp_announce=2 keeps
 * the load side's ARP requests from teaching the daemon side one entry per client address.
 */
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'

export interface Lab {
  readonly id: string
  readonly daemon: string
  readonly load: string
  readonly inet: string
  readonly wgAddress: string
  readonly publicAddress: string
}

const run = (args: readonly string[]): string => execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })

/** Runs a command inside a namespace; throws with its stderr on a non-zero exit. */
export const nsExec = (ns: string, file: string, args: readonly string[]): string => run(['netns', 'exec', ns, file, ...args])

/** Namespaces this process created and has not deleted yet. */
const live = new Set<string>()

export function createLab(): Lab {
  const id = `wgpmp-bench-${randomBytes(3).toString('hex')}`
  const lab: Lab = { id, daemon: `${id}-d`, load: `${id}-l`, inet: `${id}-i`, wgAddress: '10.8.0.1', publicAddress: '198.51.100.1' }
  try {
    for (const ns of [lab.daemon, lab.load, lab.inet]) {
      run(['netns', 'add', ns])
      live.add(ns)
      run(['-n', ns, 'link', 'set', 'lo', 'up'])
    }
    const d = lab.daemon
    const l = lab.load
    const i = lab.inet
    run(['-n', d, 'link', 'add', 'wg0', 'type', 'veth', 'peer', 'name', 'veth0', 'netns', l])
    run(['-n', d, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', i])
    run(['-n', d, 'addr', 'add', '10.8.0.1/16', 'dev', 'wg0'])
    run(['-n', d, 'addr', 'add', '198.51.100.1/24', 'dev', 'eth0'])
    run(['-n', l, 'addr', 'add', '10.8.0.2/16', 'dev', 'veth0'])
    run(['-n', i, 'addr', 'add', '198.51.100.2/24', 'dev', 'eth0'])
    for (const [ns, dev] of [
      [d, 'wg0'],
      [d, 'eth0'],
      [l, 'veth0'],
      [i, 'eth0'],
    ] as const)
      run(['-n', ns, 'link', 'set', dev, 'up'])
    nsExec(l, 'sysctl', ['-qw', 'net.ipv4.conf.all.arp_announce=2', 'net.ipv4.conf.veth0.arp_announce=2'])
    run(['-n', l, 'route', 'add', 'local', '10.8.128.0/17', 'dev', 'lo'])
    run(['-n', l, 'route', 'add', 'default', 'via', '10.8.0.1'])
    run(['-n', d, 'route', 'add', '10.8.128.0/17', 'via', '10.8.0.2', 'dev', 'wg0'])
    nsExec(d, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1'])
  } catch (e) {
    destroyLab(lab)
    throw e
  }
  return lab
}

/**
 * Stops whatever still runs inside the lab's namespaces (only processes this bench started can
 * be there: the namespaces are its own), then deletes them. Synchronous, so it also works from
 * an exit handler. Safe to call twice.
 */
export function destroyLab(lab: Lab): void {
  for (const ns of [lab.daemon, lab.load, lab.inet]) {
    if (!live.has(ns)) continue
    try {
      for (const pid of run(['netns', 'pids', ns]).split(/\s+/).filter(Boolean).map(Number)) {
        try {
          process.kill(pid, 'SIGKILL')
        } catch {
          // already gone
        }
      }
    } catch {
      // namespace already gone
    }
    try {
      run(['netns', 'del', ns])
    } catch {
      // already gone
    }
    live.delete(ns)
  }
}

/** The ARP/return path works: a UDP datagram from a far client address reaches the daemon side and back. */
export function checkPaths(lab: Lab): { neighbours: string } {
  return { neighbours: nsExec(lab.daemon, 'ip', ['neigh', 'show', 'dev', 'wg0']).trim() }
}
