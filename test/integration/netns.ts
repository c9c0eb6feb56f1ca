/**
 * Throwaway network namespaces (wgpmp-ipt-*, or WGPMP_NETNS_PREFIX-* when set) for driver
 * integration tests; never the root namespace.
 */
import { randomBytes } from 'node:crypto'
import { systemExec, type Exec } from '../../src/core/exec.js'

const live = new Set<string>()

async function ip(args: readonly string[]): Promise<void> {
  const r = await systemExec('ip', args)
  if (r.exitCode !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`)
}

export interface Netns {
  readonly name: string
  /** Runs a command inside the namespace (`ip netns exec <name> file args...`). */
  readonly exec: Exec
  /** Deletes the namespace; safe to call twice. */
  readonly remove: () => Promise<void>
}

const PREFIX = /^[a-z0-9-]{1,16}$/.test(process.env['WGPMP_NETNS_PREFIX'] ?? '') ? process.env['WGPMP_NETNS_PREFIX']! : 'wgpmp-ipt'

/** Creates `wgpmp-ipt-<random>`. Pair with remove() in a finally/afterEach and removeAllNetns() in afterAll. */
export async function createNetns(): Promise<Netns> {
  const name = `${PREFIX}-${randomBytes(4).toString('hex')}`
  await ip(['netns', 'add', name])
  live.add(name)
  return {
    name,
    exec: (file, args, o) => systemExec('ip', ['netns', 'exec', name, file, ...args], o),
    remove: async () => {
      if (!live.delete(name)) return
      await ip(['netns', 'del', name])
    },
  }
}

/** Deletes every namespace this process created and has not removed yet. */
export async function removeAllNetns(): Promise<void> {
  const names = [...live]
  live.clear()
  await Promise.allSettled(names.map((n) => ip(['netns', 'del', n])))
}
