/**
 * NftSession: one long-lived `nft -j -i` process fed one JSON batch per line, so the request path
 * pays the kernel round trip (microseconds) instead of a process spawn (milliseconds).
 *
 * nft writes nothing on success and an error on failure, so after each batch we send a marker
 * that always succeeds and prints one JSON line. stderr is merged into stdout (`2>&1` in a tiny
 * sh wrapper) so that the error text of a batch always precedes its marker.
 *
 * The marker is `list flowtables`: it needs no table and nft answers it without loading set
 * elements. (`list tables` made nft refresh its whole cache, elements included: 75 ms per batch
 * at 10,000 forwards and 600 ms at 50,000; bench/RESULTS.md.) It must not name wgpmp's table: if
 * the marker failed, no marker line would come back and the batch would never settle.
 */
import { WgpmpError } from '../core/errors.js'
import { systemSpawn, type ChildHandle } from '../core/exec.js'

const MARKER = JSON.stringify({ nftables: [{ list: { flowtables: null } }] })

/**
 * An `nft -i` process gets slower with every command it has read (0.3 ms per batch when new,
 * 1.5 ms after 7,400 batches: it keeps its input history), so a session is replaced by a fresh
 * one after this many batches, between batches. A spawn costs a few milliseconds once.
 */
export const RECYCLE_AFTER_BATCHES = 500

interface Pending {
  resolve: (errorText: string) => void
  reject: (e: Error) => void
}

export class NftSession {
  private child: ChildHandle | null = null
  private buf = ''
  private errText = ''
  private pending: Pending[] = []
  private dead: Error | null = null
  private batches = 0

  /** argv runs nft, e.g. ['nft'] or ['ip', 'netns', 'exec', 'ns1', 'nft']. */
  constructor(
    private readonly argv: readonly string[] = ['nft'],
    private readonly recycleAfter = RECYCLE_AFTER_BATCHES,
  ) {}

  /** The PID of the current nft process, if one runs (tests). */
  get pid(): number | undefined {
    return this.child?.pid
  }

  private start(): ChildHandle {
    const cmd = [...this.argv, '-j', '-i'].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ')
    const child = systemSpawn('/bin/sh', ['-c', `exec ${cmd} 2>&1`], { stdin: 'pipe', stderr: 'inherit' })
    child.stdout?.setEncoding('utf8')
    child.stdout?.on('data', (chunk: string) => {
      if (this.child === child) this.onData(chunk)
    })
    const fail = (e: Error): void => {
      if (this.child !== child) return // a recycled process exiting: nothing of ours was pending on it
      this.child = null
      this.dead = e
      for (const p of this.pending.splice(0)) p.reject(e)
    }
    // Not a refusal (nft answers those on stdout, and the session goes on): the process itself failed.
    const missing = (e: Error): boolean => (e as NodeJS.ErrnoException).code === 'ENOENT'
    child.on('error', (e) => fail(new WgpmpError(missing(e) ? 'WGPMP_EXEC_MISSING' : 'WGPMP_EXEC_FAILED', `nft session: ${e.message}`, { cause: e })))
    child.on('exit', (code, signal) => fail(new WgpmpError('WGPMP_EXEC_FAILED', `nft session exited (${signal ?? code})`)))
    child.stdin?.on('error', () => {}) // EPIPE surfaces through 'exit'
    this.child = child
    this.dead = null
    this.buf = ''
    this.errText = ''
    this.batches = 0
    return child
  }

  private onData(chunk: string): void {
    this.buf += chunk
    for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
      const line = this.buf.slice(0, nl)
      this.buf = this.buf.slice(nl + 1)
      if (line.startsWith('{"nftables"')) {
        const text = this.errText
        this.errText = ''
        this.pending.shift()?.resolve(text)
        if (this.pending.length === 0 && this.batches >= this.recycleAfter) this.recycle()
      } else if (line.trim() !== '') {
        this.errText += line + '\n'
      }
    }
  }

  /**
   * Runs one JSON batch (one transaction). Resolves with nft's error text ('' on success).
   * Rejects only if the process cannot run; the next call starts a new one.
   */
  run(batchJson: string): Promise<string> {
    if (batchJson.includes('\n')) throw new Error('nft session: batch must be one line')
    const child = this.child ?? this.start()
    this.batches++
    return new Promise<string>((resolve, reject) => {
      this.pending.push({ resolve, reject })
      child.stdin?.write(batchJson + '\n' + MARKER + '\n')
    })
  }

  /** Lets the current process go (it exits once its stdin closes); the next run() starts a fresh one. */
  private recycle(): void {
    const c = this.child
    this.child = null
    c?.stdin?.end()
  }

  get lastError(): Error | null {
    return this.dead
  }

  close(): void {
    const c = this.child
    this.child = null
    if (c) {
      c.stdin?.end()
      c.kill()
    }
  }
}
