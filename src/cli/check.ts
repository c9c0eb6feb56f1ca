/**
 * `--check` tells the truth (issue 10 §6): every config the daemon would refuse, or would start
 * with while ignoring part of it, is refused here with a message naming the key. Pure checks
 * (publicAddressProblem, apiListenProblem) also run in parseConfig, so the daemon refuses those
 * too; checkConfig adds what needs the host (interfaces, WireGuard, files) and only reads: it never
 * creates the nftables table or writes anything.
 */
import { existsSync } from 'node:fs'
import { networkInterfaces } from 'node:os'
import { parseHostPort } from '../config/schema-api.js'
import type { Config } from '../config/schema.js'
import { loadApiToken } from '../http/api.js'
import { overlaps, parseConfigStaticForwards, formatSpec, type StaticForwardSpec } from '../mappings/static.js'
import { checkStatePath } from '../state/journal.js'
import { clientId, isClientId } from '../wireguard/peers.js'
import { isWgKey } from '../wireguard/wg-dump.js'

export interface CheckDeps {
  /** Does this network interface exist (in this namespace)? */
  interfaceExists(name: string): boolean
  /** The WireGuard listen port of the interface, or null if it cannot be read. */
  wgListenPort(ifname: string): Promise<number | null>
  /** The public keys of the interface's peers, or null if they cannot be read. */
  peerKeys(ifname: string): Promise<string[] | null>
}

/** Interface lookup: os.networkInterfaces lists only interfaces with an address; /sys/class/net has them all. */
export const interfaceExists = (name: string): boolean => name in networkInterfaces() || existsSync(`/sys/class/net/${name}`)

export interface CheckResult {
  readonly errors: string[]
  readonly warnings: string[]
}

/** Everything --check refuses (errors) or points out (warnings) beyond parseConfig. Never rejects. */
export async function checkConfig(c: Readonly<Config>, deps: CheckDeps): Promise<CheckResult> {
  const errors: string[] = []
  const warnings: string[] = []
  // A disabled daemon touches nothing at start (it says so and exits 0): nothing on the host to check.
  if (!c.port_forward_enabled) return { errors, warnings: ['port_forward_enabled is false: the daemon starts, says so and exits 0'] }
  if (!deps.interfaceExists(c.wg_interface)) errors.push(`wg_interface: there is no interface named ${c.wg_interface}`)
  if (c.public_address_v4 === undefined && !deps.interfaceExists(c.public_interface))
    errors.push(`public_interface: there is no interface named ${c.public_interface} (or set public_address_v4)`)
  if (c.api_token_file !== undefined) {
    try {
      await loadApiToken(c.api_token_file)
    } catch (e) {
      errors.push((e as Error).message)
    }
  }
  try {
    await checkStatePath(c.state_file)
  } catch (e) {
    errors.push((e as Error).message)
  }

  // Static forwards: each parses, avoids the WireGuard port and reserved ports, collides with no other client's.
  const toId = (k: string): string => (isWgKey(k) ? clientId(k) : k)
  const parsed = parseConfigStaticForwards(c.static_forwards, toId)
  errors.push(...parsed.problems)
  const wgPort = await deps.wgListenPort(c.wg_interface)
  const reserved = new Set<number>(c.reserved_ports)
  const apiPort = c.api_token_file === undefined ? null : (parseHostPort(c.api_listen)?.port ?? null)
  const all: { key: string; id: string; spec: StaticForwardSpec }[] = []
  for (const [key] of Object.entries(c.static_forwards)) {
    for (const spec of parsed.forwards.get(toId(key)) ?? []) {
      const covers = (p: number): boolean => p >= spec.external.first && p <= spec.external.last
      if (wgPort !== null && covers(wgPort)) errors.push(`static_forwards.${key}: ${formatSpec(spec)} takes the WireGuard listen port ${wgPort}`)
      for (const p of reserved) if (covers(p)) errors.push(`static_forwards.${key}: ${formatSpec(spec)} takes port ${p} of reserved_ports`)
      if (apiPort !== null && apiPort !== 0 && covers(apiPort))
        errors.push(`static_forwards.${key}: ${formatSpec(spec)} takes the API port ${apiPort} (api_listen)`)
      all.push({ key, id: toId(key), spec })
    }
  }
  for (let i = 0; i < all.length; i++) {
    for (let j = i + 1; j < all.length; j++) {
      const a = all[i]!
      const b = all[j]!
      if (!overlaps(a.spec, b.spec)) continue
      if (a.id !== b.id)
        errors.push(`static_forwards.${b.key}: ${formatSpec(b.spec)} collides with ${formatSpec(a.spec)} of another client (static_forwards.${a.key})`)
      else if (formatSpec(a.spec) !== formatSpec(b.spec))
        errors.push(`static_forwards.${b.key}: ${formatSpec(b.spec)} overlaps ${formatSpec(a.spec)} of the same client`)
    }
  }
  for (const key of Object.keys(c.static_forwards)) {
    if (!isWgKey(key) && !isClientId(key)) errors.push(`static_forwards.${key}: not a WireGuard public key or a client id`)
  }
  const peers = await deps.peerKeys(c.wg_interface)
  if (peers !== null) {
    const known = new Set([...peers, ...peers.map(clientId)])
    for (const key of Object.keys(c.static_forwards)) {
      if ((isWgKey(key) || isClientId(key)) && !known.has(key))
        warnings.push(`static_forwards.${key}: no peer of ${c.wg_interface} has this key or id (yet); its forwards wait for it`)
    }
  } else if (Object.keys(c.static_forwards).length > 0) {
    warnings.push(`static_forwards: cannot read the peers of ${c.wg_interface}; their keys were not checked`)
  }
  return { errors, warnings }
}
