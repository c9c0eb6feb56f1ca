#!/usr/bin/env node
/** The process edge: argv, env, signals and exit codes live here and nowhere else. */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { flushForwards, listClients, listForwards } from './cli/control.js'
import { loadConfig } from './config/load.js'
import { checkConfig, interfaceExists } from './cli/check.js'
import { systemExec } from './core/exec.js'
import { WgPeerSource } from './wireguard/peers.js'
import { startDaemon } from './daemon.js'
import { isWgpmpError } from './core/errors.js'
import { onStopSignals, type StopSignal } from './core/signals.js'
import { formatTestResults, notifyTest } from './notify/index.js'
import { createLogger, type LogFormat } from './log.js'

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }

const HELP = `Usage: wgpmp [--config FILE]              run the daemon in the foreground
       wgpmp forwards [--json] [--config FILE]
                                          list every forward: client, public address:port, target,
                                          origin, time left (through the running daemon's API, or
                                          from the state file when the API is off)
       wgpmp clients [--json] [--config FILE]
                                          list the WireGuard peers and their state (needs the API)
       wgpmp flush [--config FILE]        remove every NAT-PMP/PCP lease (static forwards stay)
       wgpmp notify-test [--config FILE]  send one test event to every notification channel
       wgpmp --check [--config FILE]      validate the config and exit
       wgpmp --help | --version
Options: --log-format json|pretty|auto    log format (default: log_format in the config; auto =
                                          pretty on a terminal)

NAT-PMP (RFC 6886) port forwarding for WireGuard servers. Forwards are elements of the
nftables table "inet wgpmp": inspect them with  nft list table inet wgpmp
Config keys and defaults: see README.md (default config path /etc/wgpmp/config.json).
`

async function main(): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      options: {
        config: { type: 'string', short: 'c', default: '/etc/wgpmp/config.json' },
        check: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        'log-format': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
        version: { type: 'boolean', short: 'v', default: false },
      },
      strict: true,
      allowPositionals: true,
    })
  } catch (e) {
    process.stderr.write(`wgpmp: ${(e as Error).message}\n\n${HELP}`)
    return 2
  }
  const command = parsed.positionals[0]
  const args = parsed.values
  if (command !== undefined && !['forwards', 'clients', 'flush', 'notify-test'].includes(command)) {
    process.stderr.write(`wgpmp: unknown command ${command}\n\n${HELP}`)
    return 2
  }
  const logFormat = args['log-format']
  if (logFormat !== undefined && !['json', 'pretty', 'auto'].includes(logFormat)) {
    process.stderr.write(`wgpmp: --log-format must be json, pretty or auto\n`)
    return 2
  }
  if (args.help) {
    process.stdout.write(HELP)
    return 0
  }
  if (args.version) {
    process.stdout.write(`wgpmp ${pkg.version}\n`)
    return 0
  }
  let config
  try {
    config = await loadConfig(args.config)
  } catch (e) {
    process.stderr.write(`wgpmp: invalid configuration: ${(e as Error).message}\n`)
    return 2
  }
  if (args.check) {
    // Issue 10 §6: refuse what the daemon would refuse or ignore at start; only reads (no nftables table).
    const r = await checkConfig(config, {
      interfaceExists,
      wgListenPort: async (ifname) => {
        const out = await systemExec('wg', ['show', ifname, 'listen-port']).catch(() => null)
        const p = Number(out?.stdout.trim())
        return out?.exitCode === 0 && Number.isInteger(p) && p > 0 ? p : null
      },
      peerKeys: (ifname) =>
        new WgPeerSource({ exec: systemExec, ifname }).refresh().then(
          (ps) => ps.map((p) => p.publicKey),
          () => null,
        ),
    })
    for (const w of r.warnings) process.stderr.write(`wgpmp: warning: ${w}\n`)
    if (r.errors.length > 0) {
      process.stderr.write(`wgpmp: invalid configuration: ${args.config}: ${r.errors.join('; ')}\n`)
      return 2
    }
    process.stdout.write(`${args.config}: ok\n`)
    return 0
  }
  if (command === 'notify-test') {
    try {
      const rs = await notifyTest(config.notifications)
      process.stdout.write(formatTestResults(rs))
      return rs.every((r) => r.ok) ? 0 : 1
    } catch (e) {
      process.stderr.write(`wgpmp notify-test: ${(e as Error).message}\n`)
      return 2
    }
  }
  if (command !== undefined) {
    try {
      process.stdout.write(
        command === 'forwards'
          ? await listForwards(config, Date.now(), args.json)
          : command === 'clients'
            ? await listClients(config, args.json)
            : await flushForwards(config),
      )
      return 0
    } catch (e) {
      process.stderr.write(`wgpmp ${command}: ${(e as Error).message}\n`)
      return 1
    }
  }
  const log = createLogger(process.env.WGPMP_LOG_LEVEL ?? config.log_level, undefined, (logFormat ?? config.log_format) as LogFormat)
  // The signal handlers go in before the daemon starts: a SIGTERM that arrives while it is still
  // starting (the sockets already answer, the API or UPnP not yet) waits for the start and then
  // stops it cleanly, instead of Node's default of dying with the forwards left in the kernel.
  // They stay installed (core/signals.ts says why `once` killed the daemon mid-start).
  let signalled: ((signal: StopSignal) => void) | null = null
  let early: StopSignal | null = null
  onStopSignals(
    (signal) => (signalled ? signalled(signal) : void (early = signal)),
    (signal) => log.warn({ signal }, 'already stopping: the stop finishes first (SIGKILL to cut it short)'),
  )
  let daemon
  try {
    daemon = await startDaemon(config, { log })
  } catch (err) {
    log.fatal({ err, code: isWgpmpError(err) ? err.code : undefined }, 'cannot start')
    process.stderr.write(`wgpmp: cannot start: ${(err as Error).message}\n`)
    return 1
  }
  if (!daemon.udpAddress) return 0
  const running = daemon
  return new Promise<number>((resolve) => {
    signalled = (signal: StopSignal): void => {
      log.info({ signal }, 'stopping')
      running.close().then(
        () => resolve(0),
        (err: unknown) => {
          log.error({ err }, 'teardown failed')
          resolve(1)
        },
      )
    }
    if (early) signalled(early)
  })
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`wgpmp: ${(err as Error).stack ?? String(err)}\n`)
    process.exit(1)
  },
)
