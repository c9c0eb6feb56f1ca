/** The host around the daemon: ports it must never grant, and another table's FORWARD drop. */
import { parseHostPort } from '../config/schema-api.js'
import type { ForwardDriver } from '../drivers/driver.js'
import { wgListenPort } from '../host/addresses.js'
import { HostFirewall } from '../host/firewall.js'
import { ListeningPortsCache, readListeningPortsSs } from '../host/listening.js'
import type { Registry } from 'prom-client'
import type { Context } from './deps.js'

/** Configured, WireGuard's and the API's ports, and the host's listening ports, kept fresh off the request path. */
export async function startReservedPorts(ctx: Context): Promise<{ isReserved: (port: number) => boolean; hostPorts: ListeningPortsCache }> {
  const { config, deps, clock, exec, log } = ctx
  const reserved = new Set<number>([...config.reserved_ports, ...(deps.reservedPorts ?? (await wgListenPort(exec, config.wg_interface, log)))])
  const apiPort = parseHostPort(config.api_listen)?.port
  if (config.api_token_file && apiPort) reserved.add(apiPort)
  const hostPorts = new ListeningPortsCache({ clock, read: deps.listeningPorts ?? (() => readListeningPortsSs(exec)) })
  const hostErr = await hostPorts.refresh()
  if (hostErr) log.warn({ err: hostErr }, "cannot read the host's listening ports; only configured ports are reserved")
  // Kept fresh off the request path: sock_diag (ss -l, in a child) every 200 ms.
  hostPorts.startBackground(200)
  ctx.components.add('host ports', () => hostPorts.stop())
  return { isReserved: (p) => reserved.has(p) || hostPorts.has(p), hostPorts }
}

/** Another table's FORWARD drop (ufw, Docker) would drop our forwards: warn, or insert the accept. Only with a real kernel. */
export async function startHostFirewall(ctx: Context, driver: ForwardDriver, registry: Registry): Promise<HostFirewall | null> {
  if (!driver.capabilities.kernel) return null
  const { config } = ctx
  const hostFw = new HostFirewall({
    exec: ctx.exec,
    clock: ctx.clock,
    log: ctx.log.child({ component: 'host-firewall' }),
    wgInterface: config.wg_interface,
    publicInterface: config.public_interface,
    accept: config.host_firewall_accept,
  })
  hostFw.registerMetric(registry)
  ctx.components.add('host firewall', () => hostFw.close()) // removes the accept rule host_firewall_accept inserted
  await hostFw.check()
  return hostFw
}
