/** startDaemon: wires config, lease table, driver, expiry and the UDP socket. The only module that knows them all. */
import { networkInterfaces } from 'node:os'
import type { Config } from './config/schema.js'
import type { ForwardDriver } from './drivers/driver.js'
import { GroupCommit } from './drivers/batcher.js'
import { NftDriver } from './drivers/nft.js'
import { IptablesDriver } from './drivers/iptables.js'
import { WgpmpError } from './errors.js'
import { systemExec, type Exec } from './exec.js'
import { inCidr4, parseCidr4, parseIPv4 } from './ip.js'
import type { Logger } from './log.js'
import { systemClock, type Clock } from './mappings/clock.js'
import { ExpiryScheduler } from './mappings/expiry.js'
import { MappingTable } from './mappings/table.js'
import { NATPMP_PORT, NATPMP_VERSION } from './protocol/constants.js'
import { NatPmpService, type ServiceDeps } from './server/natpmp-service.js'
import { PcpService } from './server/pcp-service.js'
import { startUdpServer } from './server/udp.js'

export interface Deps {
  clock: Clock
  exec: Exec
  driver: ForwardDriver
  log: Logger
  /** Where to bind NAT-PMP (default: the address of wg_address_v4, port 5351). Tests use 127.0.0.1:0. */
  listen: { host: string; port: number }
  /** Overrides the public address lookup (tests). */
  publicAddress: string
  /** Ports never granted, found at start (default: the WireGuard listen port from `wg`). */
  reservedPorts: readonly number[]
}

export interface Daemon {
  readonly udpAddress: { address: string; port: number } | null
  readonly table: MappingTable | null
  readonly driver: ForwardDriver | null
  /** Stops serving; with teardown (default: config.teardown_on_exit) removes every forward and the table. */
  close(opts?: { teardown?: boolean }): Promise<void>
}

/** The first IPv4 address of an interface, or null. */
export function interfaceV4(name: string): string | null {
  return networkInterfaces()[name]?.find((a) => a.family === 'IPv4')?.address ?? null
}

async function wgListenPort(exec: Exec, ifname: string, log: Logger): Promise<number[]> {
  try {
    const r = await exec('wg', ['show', ifname, 'listen-port'])
    const p = Number(r.stdout.trim())
    if (r.exitCode === 0 && Number.isInteger(p) && p > 0) return [p]
    log.warn({ ifname, stderr: r.stderr }, 'cannot read the WireGuard listen port; it is not reserved')
  } catch (err) {
    log.warn({ err, ifname }, 'cannot run wg; the WireGuard listen port is not reserved')
  }
  return []
}

export async function startDaemon(config: Readonly<Config>, deps: Partial<Deps> & { log: Logger }): Promise<Daemon> {
  const log = deps.log
  if (!config.port_forward_enabled) {
    log.info('port forwarding is disabled (port_forward_enabled: false); nothing to do')
    return { udpAddress: null, table: null, driver: null, close: () => Promise.resolve() }
  }
  const clock = deps.clock ?? systemClock
  const exec = deps.exec ?? systemExec
  const wg = parseCidr4(config.wg_address_v4)!
  const publicAddress = deps.publicAddress ?? config.public_address_v4 ?? interfaceV4(config.public_interface)
  if (!publicAddress) {
    throw new WgpmpError('WGPMP_ADDRESS_UNKNOWN', `public_interface ${config.public_interface} has no IPv4 address; set public_address_v4`)
  }
  const reserved = new Set<number>([...config.reserved_ports, ...(deps.reservedPorts ?? (await wgListenPort(exec, config.wg_interface, log)))])
  const driver: ForwardDriver =
    deps.driver ??
    (config.port_forward_driver === 'iptables'
      ? new IptablesDriver({ exec })
      : new NftDriver({ exec, mode: config.nft_mode }))

  await driver.ensureBase({ publicV4: [publicAddress], wgInterfaces: [config.wg_interface] })
  log.info({ driver: driver.name, mode: driver instanceof NftDriver ? driver.mode : undefined, publicAddress }, 'forwarding base installed')

  const table = new MappingTable({
    clock,
    minPort: config.port_forward_min_port,
    maxPort: config.port_forward_max_port,
    minLifetimeSeconds: config.lifetime_min_seconds,
    maxLifetimeSeconds: config.lifetime_max_seconds,
    maxPerClient: config.max_forwards_per_client,
    isReserved: (p) => reserved.has(p),
  })
  const epochStart = clock.now()
  const batcher = new GroupCommit(driver, (size, ms, ok) => log.debug({ size, ms, ok }, 'batch'))
  const expiry = new ExpiryScheduler(clock, table, (r) => batcher.submit(r.changes), log.child({ component: 'expiry' }))
  const serviceDeps: Omit<ServiceDeps, 'log'> = {
    table,
    commit: (changes) => batcher.submit(changes),
    epochSeconds: () => Math.floor((clock.now() - epochStart) / 1000),
    publicAddress: () => publicAddress,
    isClient: (address) => {
      const ip = parseIPv4(address)
      return ip !== null && inCidr4(wg, ip) && ip !== wg.addr && ip !== wg.network && ip !== (wg.network | ~wg.mask) >>> 0
    },
    changed: () => expiry.reschedule(),
  }
  const natpmp = new NatPmpService({ ...serviceDeps, log: log.child({ component: 'natpmp' }) })
  const pcp = new PcpService({ ...serviceDeps, log: log.child({ component: 'pcp' }) })
  // Byte 0 is the version: 0 is NAT-PMP, anything else PCP (which answers UNSUPP_VERSION for
  // versions it does not speak). With PCP off, NAT-PMP's 8-byte reply makes clients fall back.
  const handle = (msg: Uint8Array, src: string): Promise<Uint8Array | null> =>
    msg.byteLength > 0 && msg[0] !== NATPMP_VERSION && config.pcp_enabled ? pcp.handle(msg, src) : natpmp.handle(msg, src)

  const listen = deps.listen ?? { host: wg.address, port: NATPMP_PORT }
  let udp
  try {
    udp = await startUdpServer(listen.host, listen.port, handle, log.child({ component: 'udp' }))
  } catch (err) {
    await driver.teardown().catch(() => {})
    throw new WgpmpError('WGPMP_ADDRESS_UNKNOWN', `cannot listen on ${listen.host}:${listen.port} (${(err as Error).message}); is ${config.wg_interface} up with ${config.wg_address_v4}?`, { cause: err })
  }
  log.info({ address: udp.address.address, port: udp.address.port, wgInterface: config.wg_interface }, 'NAT-PMP listening')

  let closed = false
  return {
    udpAddress: udp.address,
    table,
    driver,
    async close(opts) {
      if (closed) return
      closed = true
      expiry.stop()
      await udp.close()
      await batcher.idle()
      if (opts?.teardown ?? config.teardown_on_exit) {
        await driver.teardown()
        log.info({ forwards: table.size }, 'forwards removed, table deleted')
      }
      if (driver instanceof NftDriver) driver.close()
    },
  }
}
