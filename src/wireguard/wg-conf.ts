/**
 * Client names from the WireGuard config file wg-easy v15 generates (/etc/wireguard/<if>.conf),
 * and a source that re-reads it (and v14's wg0.json) when it changes, so a client renamed or added
 * in wg-easy shows under its name without a restart.
 *
 * wg-easy v15 (src/server/utils/wgHelper.ts, generateServerPeer; WireGuard.ts saveConfig) writes
 * the [Interface] block, then one block per enabled client, joined by blank lines:
 *
 *   # Client: Alice's phone (3)
 *   [Peer]
 *   PublicKey = <base64>
 *   PresharedKey = <base64>
 *   AllowedIPs = 10.8.0.3/32, fdcc:ad94:bacf:61a4::cafe:3/128
 *
 * The id is wg-easy's database id (an integer). The file is rewritten in place (fs.writeFile, mode
 * 0600), so a read can catch it half written: the source compares the file's identity before and
 * after each read and reads again on the next poll if it moved.
 */
import { readFile, stat } from 'node:fs/promises'
import { parseWgEasyClients, WG_EASY_V14_PATH } from './peers.js'
import { isWgKey } from './wg-dump.js'

export interface ConfClient {
  readonly name: string
  /** wg-easy's client id, the text in the trailing parentheses; null if the comment has none. */
  readonly id: string | null
}

/** `# Client: <name> (<id>)`; the id is the last parenthesised group, so a name may contain parentheses. */
const CLIENT_RE = /^#\s*Client:\s*(.*?)\s*(?:\(([^()]*)\))?\s*$/
const SECTION_RE = /^\[([A-Za-z]+)\]\s*(?:[#;].*)?$/
const KEY_RE = /^PublicKey\s*=\s*(\S+)\s*$/i

/**
 * The named peers of a WireGuard config file, by public key: each [Peer] whose block is preceded
 * by a `# Client: name (id)` comment (blank lines and other comments between them allowed). Peers
 * without such a comment, malformed keys and empty names are skipped; never throws.
 */
export function parseWgConfClients(text: string): Map<string, ConfClient> {
  const out = new Map<string, ConfClient>()
  let pending: ConfClient | null = null
  let inPeer: ConfClient | null = null
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim()
    if (line === '') continue
    const section = SECTION_RE.exec(line)
    if (section) {
      inPeer = section[1]!.toLowerCase() === 'peer' ? pending : null
      pending = null
      continue
    }
    if (line.startsWith('#') || line.startsWith(';')) {
      const m = CLIENT_RE.exec(line)
      if (m) {
        const name = m[1]!.trim()
        const id = m[2]?.trim()
        pending = name === '' ? null : { name, id: id === undefined || id === '' ? null : id }
      }
      continue
    }
    const key = KEY_RE.exec(line)
    if (key && inPeer && isWgKey(key[1]!)) {
      out.set(key[1]!, inPeer)
      inPeer = null
    }
  }
  return out
}

/** What a poll of the name files found. */
export interface NamePoll {
  /** The names differ from the previous poll's. */
  readonly changed: boolean
  /** Problems to log (unreadable or malformed file), each reported once until it changes. */
  readonly problems: readonly string[]
}

interface FileState {
  /** mtime, size and inode at the last complete read; null when absent. */
  stamp: string | null
  names: Map<string, string>
  ids: Map<string, string>
  problem: string | null
}

export interface WgNameSourceOptions {
  /** The WireGuard config file (wg-easy v15, or any with `# Client:` comments). */
  confPath: string
  /** wg-easy v14's client list; null to skip. Default /etc/wireguard/wg0.json. */
  jsonPath?: string | null
  /** Injected for tests. */
  stat?: (path: string) => Promise<{ mtimeMs: number; size: number; ino: number }>
  read?: (path: string) => Promise<string>
}

/**
 * Client names from the WireGuard config file and wg-easy v14's wg0.json (the config file wins
 * for a key in both). poll() re-reads a file only when its mtime, size or inode changed, so it is
 * cheap enough for every peer refresh. A missing file is the normal case (no names from it).
 */
export class WgNameSource {
  private readonly files: { path: string; kind: 'conf' | 'json'; state: FileState }[]
  private readonly statFn: NonNullable<WgNameSourceOptions['stat']>
  private readonly readFn: NonNullable<WgNameSourceOptions['read']>
  private merged = new Map<string, string>()
  private ids = new Map<string, string>()

  constructor(o: WgNameSourceOptions) {
    const jsonPath = o.jsonPath === undefined ? WG_EASY_V14_PATH : o.jsonPath
    const fresh = (): FileState => ({ stamp: null, names: new Map(), ids: new Map(), problem: null })
    this.files = [{ path: o.confPath, kind: 'conf', state: fresh() }]
    if (jsonPath !== null && jsonPath !== o.confPath) this.files.push({ path: jsonPath, kind: 'json', state: fresh() })
    this.statFn = o.stat ?? ((p) => stat(p))
    this.readFn = o.read ?? ((p) => readFile(p, 'utf8'))
  }

  /** The display name for a public key, or null. */
  nameOf(publicKey: string): string | null {
    return this.merged.get(publicKey) ?? null
  }

  /** wg-easy's id for a public key (from the config file's comment), or null. */
  idOf(publicKey: string): string | null {
    return this.ids.get(publicKey) ?? null
  }

  get size(): number {
    return this.merged.size
  }

  /** Re-reads the files that changed. Never rejects. */
  async poll(): Promise<NamePoll> {
    const problems: string[] = []
    let touched = false
    for (const f of this.files) {
      const before = await this.stamp(f.path)
      if (before.stamp === f.state.stamp && before.error === null) continue
      const prevProblem = f.state.problem
      if (before.stamp === null) {
        // Gone (or never there): no names from it. ENOENT is not a problem; anything else is.
        touched ||= f.state.names.size > 0
        f.state = { stamp: null, names: new Map(), ids: new Map(), problem: before.error }
      } else {
        let text: string | null = null
        let problem: string | null = null
        try {
          text = await this.readFn(f.path)
        } catch (e) {
          problem = `${f.path}: ${(e as Error).message}`
        }
        const after = await this.stamp(f.path)
        // Rewritten while we read: keep what we had and read again next poll.
        if (text !== null && after.stamp !== before.stamp) continue
        const names = new Map<string, string>()
        const ids = new Map<string, string>()
        if (text !== null && f.kind === 'conf') {
          for (const [k, c] of parseWgConfClients(text)) {
            names.set(k, c.name)
            if (c.id !== null) ids.set(k, c.id)
          }
        } else if (text !== null) {
          const parsed = parseWgEasyClients(text)
          if (parsed) for (const [k, n] of parsed) names.set(k, n)
          else problem = `${f.path}: not a wg-easy v14 client list`
        }
        touched = true
        f.state = { stamp: problem === null ? before.stamp : null, names, ids, problem }
      }
      if (f.state.problem !== null && f.state.problem !== prevProblem) problems.push(f.state.problem)
    }
    if (!touched) return { changed: false, problems }
    const merged = new Map<string, string>()
    const ids = new Map<string, string>()
    for (const f of [...this.files].reverse()) {
      for (const [k, n] of f.state.names) merged.set(k, n)
      for (const [k, i] of f.state.ids) ids.set(k, i)
    }
    const changed = !sameMap(merged, this.merged) || !sameMap(ids, this.ids)
    this.merged = merged
    this.ids = ids
    return { changed, problems }
  }

  private async stamp(path: string): Promise<{ stamp: string | null; error: string | null }> {
    try {
      const s = await this.statFn(path)
      return { stamp: `${s.mtimeMs}:${s.size}:${s.ino}`, error: null }
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      return { stamp: null, error: code === 'ENOENT' || code === 'ENOTDIR' ? null : `${path}: ${(e as Error).message}` }
    }
  }
}

const sameMap = (a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): boolean => {
  if (a.size !== b.size) return false
  for (const [k, v] of a) if (b.get(k) !== v) return false
  return true
}

/**
 * Every source of a client's display name, in order: the config's `clients`, a fixed map (tests),
 * then wg-easy's files (v15's `# Client:` comments in wg_config_file, v14's wg0.json), re-read by
 * poll() when they changed.
 */
export class PeerNames {
  private readonly files: WgNameSource | null
  constructor(
    private readonly o: {
      config: (publicKey: string) => string | null
      fixed?: ReadonlyMap<string, string> | undefined
      confPath: string
      log: { warn(fields: object, msg: string): void }
    },
  ) {
    this.files = o.fixed ? null : new WgNameSource({ confPath: o.confPath })
  }

  nameOf(publicKey: string): string | null {
    return this.o.config(publicKey) ?? this.o.fixed?.get(publicKey) ?? this.files?.nameOf(publicKey) ?? null
  }

  /** Re-reads the files if they changed; true when a name may have changed. Problems are logged. */
  async poll(): Promise<boolean> {
    if (!this.files) return false
    const r = await this.files.poll()
    for (const problem of r.problems) this.o.log.warn({ problem }, 'wg-easy client list ignored')
    return r.changed
  }
}
