/** NftDriver: forwards as elements of the `inet wgpmp` maps, changed only in atomic `nft -j` batches. */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { WgpmpError, type ErrorCode } from '../core/errors.js'
import type { Exec, ExecResult } from '../core/exec.js'
import type { BaseParams, DriverCapabilities, DriverDescription, ForwardDriver, TableWatcher, WatchHooks } from './driver.js'
import { compareForwards, type Forward, type ForwardChange } from '../core/forward.js'
import { buildBaseScript, buildBatch, nftErrorCode, parseForwardsMap, TABLE_FAMILY, TABLE_NAME } from './nft-batch.js'
import { NftLib } from './nft-lib.js'
import { NftSession } from './nft-session.js'
import { TableWatch } from './watch.js'

/**
 * A large removal goes to the kernel in batches of this many, so that requests arriving meanwhile
 * wait for one batch (a few milliseconds), not for the whole removal.
 */
export const NFT_BULK_DELETE_CHUNK = 250

export const NFT_CAPABILITIES: DriverCapabilities = { ipv6: true, watch: true, bulkDeleteChunk: NFT_BULK_DELETE_CHUNK, kernel: true }

/** nft/wgpmp.nft, found relative to this file both in src/ (tests) and dist/src/ (built). */
export async function readBaseRuleset(): Promise<string> {
  const candidates = ['../../nft/wgpmp.nft', '../../../nft/wgpmp.nft']
  for (const rel of candidates) {
    try {
      return await readFile(new URL(rel, import.meta.url), 'utf8')
    } catch {
      // try the next location
    }
  }
  throw new WgpmpError('WGPMP_RULESET_MISSING', 'nft/wgpmp.nft not found next to the program')
}

export { nftErrorCode }

export interface NftDriverOptions {
  exec: Exec
  /** Table name inside family inet (default "wgpmp"; tests may use another). */
  table?: string
  /**
   * How batches reach the kernel (see NftMode). Default 'library'. Each mode falls back to the
   * next if it cannot run: library -> session -> spawn; `fallback` says why.
   */
  mode?: NftMode
  /**
   * argv that runs nft for the session and the other commands, e.g. ['ip','netns','exec','x','nft']
   * (default ['nft']). Anything but ['nft'] rules out the library, which acts on this process's
   * own network namespace.
   */
  nftArgv?: readonly string[]
  /** The base ruleset text (default: nft/wgpmp.nft). */
  baseRuleset?: string
  /** The library the 'library' mode loads (default libnftables.so.1; tests name a missing one). */
  libnftables?: string
}

/**
 * 'library': libnftables in this process (NftLib, koffi); 'session': one long-lived `nft -j -i`
 * fed a batch per line (NftSession); 'spawn': one `nft -j -f FILE` per batch.
 */
export type NftMode = 'library' | 'session' | 'spawn'

export class NftDriver implements ForwardDriver {
  readonly name = 'nft' as const
  readonly capabilities = NFT_CAPABILITIES
  private readonly asked: NftMode
  private readonly exec: Exec
  private readonly table: string
  private readonly nftArgv: readonly string[]
  private lib: NftLib | null = null
  /** The library is still to be opened (on the first ensureBase or apply). */
  private libPending: boolean
  private session: NftSession | null = null
  private readonly baseRuleset: string | undefined
  private readonly libnftables: string | undefined
  private why: string | null = null

  constructor(opts: NftDriverOptions) {
    this.exec = opts.exec
    this.table = opts.table ?? TABLE_NAME
    this.nftArgv = opts.nftArgv ?? ['nft']
    const mode = opts.mode ?? 'library'
    this.asked = mode
    this.libPending = mode === 'library'
    if (mode === 'library' && !(this.nftArgv.length === 1 && this.nftArgv[0] === 'nft')) {
      this.libPending = false
      this.why = `library: nft runs through ${this.nftArgv.join(' ')}, in another namespace`
    }
    if (mode === 'session' || (mode === 'library' && !this.libPending)) this.session = new NftSession(this.nftArgv)
    this.baseRuleset = opts.baseRuleset
    this.libnftables = opts.libnftables
  }

  /** Which path carries batches now. Before the first ensureBase/apply, the library counts as running if asked for. */
  get mode(): NftMode {
    return this.lib || this.libPending ? 'library' : this.session ? 'session' : 'spawn'
  }

  /** Why a faster mode than the one asked for is not running (null if none fell back). */
  get fallback(): string | null {
    return this.why
  }

  describe(): DriverDescription {
    return this.why === null ? { driver: 'nft', mode: this.mode } : { driver: 'nft', mode: this.mode, asked: this.asked, fallback: this.why }
  }

  /**
   * The table watch (TableWatch): an `nft monitor` plus a periodic check, through the same nft
   * argv and table as this driver; the light check lists chains through the library when it runs.
   */
  watchTable(hooks: WatchHooks): TableWatcher {
    return new TableWatch({
      exec: this.exec,
      listChains: () => this.listChains(),
      nftArgv: this.nftArgv,
      table: this.table,
      clock: hooks.clock,
      log: hooks.log,
      onLost: hooks.onLost,
      ...(hooks.intervalMs === undefined ? {} : { intervalMs: hooks.intervalMs }),
    })
  }

  private async openLibrary(): Promise<void> {
    if (!this.libPending) return
    this.libPending = false
    try {
      this.lib = await NftLib.open(this.libnftables)
    } catch (e) {
      this.why = e instanceof Error ? e.message : String(e)
      this.session = new NftSession(this.nftArgv)
    }
  }

  /** library -> session (the library call failed), session -> spawn (nft -i cannot run: missing, killed...). */
  private fallBack(e: unknown): void {
    if (this.lib) {
      this.why = `library: ${e instanceof Error ? e.message : String(e)}`
      void this.lib.close()
      this.lib = null
      this.session = new NftSession(this.nftArgv)
    } else if (this.session) {
      this.why = `session: ${this.session.lastError?.message ?? 'cannot run nft -i'}`
      this.session.close()
      this.session = null
    }
  }

  /**
   * Runs nft; a non-zero exit rejects with codeOf(stderr): nftErrorCode for element batches and
   * lists (exists / missing / refused), WGPMP_KERNEL_REFUSED for the base install and teardown,
   * where "File exists" or "No such file" says nothing about a forward.
   */
  private async nft(args: readonly string[], input?: string, codeOf: (stderr: string) => ErrorCode = nftErrorCode): Promise<string> {
    const [file, ...pre] = this.nftArgv
    const r = await this.exec(file ?? 'nft', [...pre, ...args], input === undefined ? {} : { input })
    if (r.exitCode !== 0) {
      throw new WgpmpError(codeOf(r.stderr), `nft ${args.join(' ')}: ${firstLine(r.stderr)}`, { cause: r.stderr })
    }
    return r.stdout
  }

  async ensureBase(params: BaseParams): Promise<void> {
    await this.openLibrary()
    const base = this.baseRuleset ?? (await readBaseRuleset())
    await this.nft(['-f', '-'], buildBaseScript(base, params, this.table), refused)
  }

  async apply(changes: readonly ForwardChange[]): Promise<void> {
    if (changes.length === 0) return
    await this.openLibrary()
    const json = JSON.stringify(buildBatch(changes, this.table))
    const runner = this.lib ?? this.session
    if (runner) {
      let errText: string
      try {
        errText = await runner.run(json)
      } catch (e) {
        // The path itself failed (not nft refusing the batch): the next one takes over for good.
        this.fallBack(e)
        return this.apply(changes)
      }
      if (errText !== '') throw new WgpmpError(nftErrorCode(errText), `nft batch of ${changes.length}: ${firstLine(errText)}`, { cause: errText })
      return
    }
    // nft 1.0.x opens /dev/stdin by path for JSON input, which fails when stdin is a socket (as
    // a child's stdin is under Node); a private temp file works everywhere.
    const dir = await mkdtemp(join(tmpdir(), 'wgpmp-nft-'))
    try {
      const file = join(dir, 'batch.json')
      await writeFile(file, json, { mode: 0o600 })
      await this.nft(['-j', '-f', file])
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }

  /**
   * `nft -j list chains`, through the library when it runs (0.4 ms, no process: the table watch
   * asks every few seconds), as an exec result: exit code, JSON output, error text.
   */
  async listChains(): Promise<ExecResult> {
    await this.openLibrary()
    if (this.lib) {
      try {
        const r = await this.lib.query(JSON.stringify({ nftables: [{ list: { chains: null } }] }))
        return { exitCode: r.ok ? 0 : 1, stdout: r.output, stderr: r.error }
      } catch {
        // The library call itself failed: the command below says what nft says.
      }
    }
    const [file, ...pre] = this.nftArgv
    return this.exec(file ?? 'nft', [...pre, '-j', 'list', 'chains'])
  }

  async list(): Promise<readonly Forward[]> {
    let out: string
    try {
      out = await this.nft(['-j', 'list', 'table', TABLE_FAMILY, this.table])
    } catch (e) {
      if (e instanceof WgpmpError && e.code === 'WGPMP_FORWARD_MISSING') return [] // no table: no forwards
      throw e
    }
    return parseForwardsMap(out).sort(compareForwards)
  }

  async teardown(): Promise<void> {
    // Create-then-delete in one transaction: succeeds whether or not the table exists.
    await this.nft(['-f', '-'], `table ${TABLE_FAMILY} ${this.table} {}\ndelete table ${TABLE_FAMILY} ${this.table}\n`, refused)
  }

  /**
   * Ends the nft session process, or frees the library context once its queued batches are done.
   * Only the session mode works afterwards (it starts a new process).
   */
  close(): void {
    this.session?.close()
    const lib = this.lib
    this.lib = null
    this.libPending = false
    if (lib) {
      void lib.close()
      this.session ??= new NftSession(this.nftArgv)
    }
  }
}

const refused = (): ErrorCode => 'WGPMP_KERNEL_REFUSED'
const firstLine = (s: string): string =>
  s
    .split('\n')
    .find((l) => l.trim() !== '')
    ?.trim() ?? 'failed'
