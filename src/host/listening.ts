/**
 * The ports the host listens on, from /proc/net/{tcp,tcp6,udp,udp6}: never granted as external
 * ports, so a forward cannot hijack a service of the server itself (issue 5).
 *
 * Which network namespace: /proc/net is a symlink to /proc/self/net, so it shows the sockets of
 * the network namespace of the *reading process*, i.e. the daemon's own. That is the right one:
 * the DNAT happens in the namespace the daemon installs its table in. A daemon started with
 * `ip netns exec X` sees X's sockets. To read another process's namespace pass
 * procRoot `/proc/<pid>` (its net/ entries are that process's namespace).
 *
 * A port counts whatever local address it is bound to (0.0.0.0, ::, 127.0.0.1 or another): the
 * issue says every port the host listens on, and a loopback-only service would still be shadowed
 * for the host's own hairpin connections to public:port. Kernel sockets (e.g. kernel WireGuard's
 * UDP socket, inode 0) are listed too.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Protocol } from '../core/forward.js'
import type { Exec } from '../core/exec.js'
import { repeat, type Cancel, type Clock } from '../core/clock.js'

/** TCP_LISTEN in include/net/tcp_states.h; /proc/net/tcp prints it as "0A". */
export const TCP_STATE_LISTEN = 0x0a

export interface ProcNetEntry {
  /** The local address as /proc prints it: 8 hex digits (IPv4) or 32 (IPv6), in host byte order words. */
  readonly localAddressHex: string
  readonly localPort: number
  readonly remoteAddressHex: string
  readonly remotePort: number
  readonly state: number
}

const LINE = /^\s*\d+:\s+([0-9A-Fa-f]{8}|[0-9A-Fa-f]{32}):([0-9A-Fa-f]{4})\s+([0-9A-Fa-f]{8}|[0-9A-Fa-f]{32}):([0-9A-Fa-f]{4})\s+([0-9A-Fa-f]{2})\s/

/**
 * Parses one /proc/net/{tcp,tcp6,udp,udp6} file. The header line and any line that does not have
 * the `sl: local rem st` shape are skipped; never throws. An empty text gives [].
 */
export function parseProcNet(text: string): ProcNetEntry[] {
  const out: ProcNetEntry[] = []
  for (const line of text.split('\n')) {
    const m = LINE.exec(line)
    if (!m) continue
    out.push({
      localAddressHex: m[1]!.toUpperCase(),
      localPort: parseInt(m[2]!, 16),
      remoteAddressHex: m[3]!.toUpperCase(),
      remotePort: parseInt(m[4]!, 16),
      state: parseInt(m[5]!, 16),
    })
  }
  return out
}

const allZero = (hex: string): boolean => /^0+$/.test(hex)

/**
 * Is this socket listening? TCP: state LISTEN (0A). UDP has no listen state: every bound socket
 * with no remote (address and port all zero) receives from anyone, so it counts; a connected UDP
 * socket (a client's, with a remote) does not. Port 0 (not bound yet) never counts.
 */
export function isListening(e: ProcNetEntry, protocol: Protocol): boolean {
  if (e.localPort === 0) return false
  if (protocol === 'tcp') return e.state === TCP_STATE_LISTEN
  return e.remotePort === 0 && allZero(e.remoteAddressHex)
}

/** The listening ports in one /proc/net file's text (IPv4 or IPv6, same format). */
export function listeningPortsIn(text: string, protocol: Protocol): Set<number> {
  const ports = new Set<number>()
  for (const e of parseProcNet(text)) if (isListening(e, protocol)) ports.add(e.localPort)
  return ports
}

export interface ListeningPorts {
  readonly tcp: ReadonlySet<number>
  readonly udp: ReadonlySet<number>
}

const FILES: readonly (readonly [Protocol, string])[] = [
  ['tcp', 'tcp'],
  ['tcp', 'tcp6'],
  ['udp', 'udp'],
  ['udp', 'udp6'],
]

/**
 * Reads procRoot/net/{tcp,tcp6,udp,udp6} (default /proc: the reading process's own network
 * namespace, see the module doc) and returns the listening ports by protocol, IPv4 and IPv6
 * merged. A missing file (e.g. IPv6 disabled: no tcp6/udp6) contributes nothing; any other read
 * error rejects, so a caller that cannot see the host's ports knows it (fail closed: refuse the
 * request rather than risk granting a port in use).
 */
export async function readListeningPorts(procRoot = '/proc'): Promise<ListeningPorts> {
  const tcp = new Set<number>()
  const udp = new Set<number>()
  await Promise.all(
    FILES.map(async ([protocol, file]) => {
      let text: string
      try {
        text = await readFile(join(procRoot, 'net', file), 'utf8')
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return
        throw e
      }
      const into = protocol === 'tcp' ? tcp : udp
      for (const p of listeningPortsIn(text, protocol)) into.add(p)
    }),
  )
  return { tcp, udp }
}

// --- sock_diag through ss (issue 10 §5) -------------------------------------------------------

/**
 * Parses `ss -H -l -n -t -u`: "NETID STATE RECV-Q SEND-Q LOCAL:PORT PEER:PORT" per line, the local
 * address as 0.0.0.0, [::], *, 127.0.0.53%lo or [fe80::1]%eth0. `-l` lists TCP LISTEN and UDP
 * UNCONN sockets: the same sockets isListening counts in /proc. Never throws.
 */
export function parseSsListening(text: string): ListeningPorts {
  const tcp = new Set<number>()
  const udp = new Set<number>()
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/)
    if (f.length < 5) continue
    const proto = f[0]
    const local = f[4]!
    const port = Number(local.slice(local.lastIndexOf(':') + 1))
    if (!Number.isInteger(port) || port <= 0 || port > 65535) continue
    if (proto === 'tcp' && f[1] === 'LISTEN') tcp.add(port)
    else if (proto === 'udp' && f[1] === 'UNCONN') udp.add(port)
  }
  return { tcp, udp }
}

/**
 * The listening ports through netlink sock_diag with the LISTEN filter applied in the kernel (what
 * `ss -l` asks for): with 10,000 established connections the kernel returns only the listeners,
 * and the work runs in a child process, not on the daemon's event loop, where reading and parsing
 * 20,000 lines of /proc/net held up requests (issue 10 §5: renewal p99 105 ms against 14 ms idle).
 * Falls back to /proc (readListeningPorts) when ss is missing or fails.
 */
export async function readListeningPortsSs(exec: Exec, procRoot = '/proc'): Promise<ListeningPorts> {
  try {
    const r = await exec('ss', ['-H', '-l', '-n', '-t', '-u'])
    if (r.exitCode === 0) return parseSsListening(r.stdout)
  } catch {
    // ss missing: /proc below
  }
  return readListeningPorts(procRoot)
}

export interface ListeningPortsCacheOptions {
  clock: Clock
  /** A read older than this is redone before answering (ms, >= 0). Default 250. */
  maxAgeMs?: number
  /** Default: readListeningPorts() (the daemon's namespace). */
  read?: () => Promise<ListeningPorts>
}

/**
 * The host's listening ports for the request path: `refresh()` before a map request rereads /proc
 * when the last read is older than maxAgeMs, and concurrent callers share one read. `has(port)` is
 * synchronous, for MappingTable's isReserved. Default age 250 ms: a service started a quarter of a
 * second before a request may be missed, and a flood costs at most 4 small file reads per second.
 */
export class ListeningPortsCache {
  private readonly clock: Clock
  private readonly maxAgeMs: number
  private readonly read: () => Promise<ListeningPorts>
  private value: ListeningPorts = { tcp: new Set(), udp: new Set() }
  private readAt = -Infinity
  private inFlight: Promise<void> | null = null
  private lastError: unknown = null
  private timer: Cancel | null = null

  constructor(opts: ListeningPortsCacheOptions) {
    this.clock = opts.clock
    this.maxAgeMs = opts.maxAgeMs ?? 250
    this.read = opts.read ?? (() => readListeningPorts())
  }

  /**
   * Rereads if stale. Never rejects: on a read error the previous ports stay (empty before the
   * first good read) and the error is returned, so the caller can log it or refuse the request.
   */
  async refresh(force = false): Promise<unknown> {
    if (!force && this.clock.now() - this.readAt < this.maxAgeMs) return null
    this.inFlight ??= this.read()
      .then(
        (v) => {
          this.value = v
          this.readAt = this.clock.now()
          this.lastError = null
        },
        (e: unknown) => {
          this.lastError = e
        },
      )
      .finally(() => {
        this.inFlight = null
      })
    await this.inFlight
    return this.lastError
  }

  /**
   * For the request path (issue 10 §5): starts a read if the last one is older than maxAgeMs and
   * none is running, and returns at once; the request is answered from the ports read so far.
   */
  refreshSoon(): void {
    if (this.inFlight || this.clock.now() - this.readAt < this.maxAgeMs) return
    void this.refresh()
  }

  /** Rereads every intervalMs in the background (so an idle daemon's first request is not answered from an old read). */
  startBackground(intervalMs: number, onError?: (err: unknown) => void): void {
    this.timer = repeat(this.clock, intervalMs, () => this.refresh(true).then((err) => err && onError?.(err)))
  }

  stop(): void {
    this.timer?.()
    this.timer = null
  }

  /** Whether the host listens on port for TCP or UDP as of the last good read (a port number is granted for both). */
  has(port: number): boolean {
    return this.value.tcp.has(port) || this.value.udp.has(port)
  }

  current(): ListeningPorts {
    return this.value
  }
}
