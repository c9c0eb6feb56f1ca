import { readFile } from 'node:fs/promises'
import { describe, expect, it } from 'vitest'
import { existsSync } from 'node:fs'
import { NftDriver, nftErrorCode } from '../../../src/drivers/nft.js'
import { NftLib } from '../../../src/drivers/nft-lib.js'
import { buildBatch } from '../../../src/drivers/nft-batch.js'
import type { Exec, ExecResult } from '../../../src/core/exec.js'
import { WgpmpError } from '../../../src/core/errors.js'

/** knftables-style scripted exec: each call must match the next expectation, else the test fails. */
function scripted(expected: { argv: string[]; input?: string; result?: Partial<ExecResult> }[]): Exec & { done(): void } {
  const queue = [...expected]
  const exec = (file: string, args: readonly string[], opts?: { input?: string }): Promise<ExecResult> => {
    const next = queue.shift()
    if (!next) throw new Error(`unexpected call: ${file} ${args.join(' ')}`)
    expect([file, ...args]).toEqual(next.argv)
    if (next.input !== undefined) expect(opts?.input).toBe(next.input)
    return Promise.resolve({ stdout: '', stderr: '', exitCode: 0, ...next.result })
  }
  return Object.assign(exec, { done: () => expect(queue).toEqual([]) })
}

/** Debian's libnftables1 (a dependency of nftables, which scripts/install-deps.sh installs). */
const hasLibnftables = [
  '/usr/lib/x86_64-linux-gnu/libnftables.so.1',
  '/usr/lib/aarch64-linux-gnu/libnftables.so.1',
  '/lib/x86_64-linux-gnu/libnftables.so.1',
].some((p) => existsSync(p))

const fwd = { protocol: 'tcp' as const, externalPort: 8080, internalAddress: '10.8.0.2', internalPort: 80 }

describe('NftDriver (spawn mode, scripted exec)', () => {
  it('loads the base ruleset in one nft -f transaction', async () => {
    const exec = scripted([
      {
        argv: ['nft', '-f', '-'],
        input:
          'table inet wgpmp {}\ndelete table inet wgpmp\ntable inet wgpmp { }\nadd element inet wgpmp public_v4 { 198.51.100.1 }\nadd element inet wgpmp wg_ifnames { "wg0" }\n',
      },
    ])
    const d = new NftDriver({ exec, mode: 'spawn', baseRuleset: 'table inet wgpmp { }' })
    await d.ensureBase({ publicV4: ['198.51.100.1'], wgInterfaces: ['wg0'] })
    exec.done()
  })
  it('sends one nft -j -f <file> batch per apply and nothing for an empty one', async () => {
    const batch = JSON.stringify(buildBatch([{ op: 'add', forward: fwd }]))
    let seen = ''
    const exec: Exec = async (file, args) => {
      expect([file, ...args.slice(0, 2)]).toEqual(['nft', '-j', '-f'])
      seen = await readFile(args[2]!, 'utf8')
      return { stdout: '', stderr: '', exitCode: 0 }
    }
    const d = new NftDriver({ exec, mode: 'spawn' })
    await d.apply([])
    await d.apply([{ op: 'add', forward: fwd }])
    expect(seen).toBe(batch)
  })
  it('maps nft errors to codes and keeps stderr as the cause', async () => {
    const stderr = 'internal:0:0-0: Error: Could not process rule: File exists'
    const exec: Exec = () => Promise.resolve({ stdout: '', stderr, exitCode: 1 })
    const d = new NftDriver({ exec, mode: 'spawn' })
    const err = await d.apply([{ op: 'add', forward: fwd }]).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(WgpmpError)
    expect((err as WgpmpError).code).toBe('WGPMP_FORWARD_EXISTS')
    expect((err as WgpmpError).cause).toBe(stderr)
  })
  it('a failing base install or teardown is WGPMP_KERNEL_REFUSED, even when nft says "No such file" or "File exists"', async () => {
    for (const stderr of ['Error: Could not process rule: No such file or directory', 'Error: Could not process rule: File exists']) {
      const exec: Exec = () => Promise.resolve({ stdout: '', stderr, exitCode: 1 })
      const d = new NftDriver({ exec, mode: 'spawn', baseRuleset: 'table inet wgpmp { }' })
      await expect(d.ensureBase({ publicV4: ['198.51.100.1'], wgInterfaces: ['wg0'] })).rejects.toMatchObject({ code: 'WGPMP_KERNEL_REFUSED', cause: stderr })
      await expect(d.teardown()).rejects.toMatchObject({ code: 'WGPMP_KERNEL_REFUSED' })
      // An element batch keeps the meaning: that text is about a forward.
      await expect(d.apply([{ op: 'add', forward: fwd }])).rejects.toMatchObject({ code: nftErrorCode(stderr) })
    }
  })
  it('list() of a missing table is empty; other failures reject', async () => {
    const exec = scripted([
      { argv: ['nft', '-j', 'list', 'table', 'inet', 'wgpmp'], result: { exitCode: 1, stderr: 'Error: No such file or directory' } },
      { argv: ['nft', '-j', 'list', 'table', 'inet', 'wgpmp'], result: { exitCode: 1, stderr: 'Error: Operation not permitted' } },
    ])
    const d = new NftDriver({ exec, mode: 'spawn' })
    expect(await d.list()).toEqual([])
    await expect(d.list()).rejects.toMatchObject({ code: 'WGPMP_KERNEL_REFUSED' })
  })
  it('runs nft through the given argv (e.g. inside a namespace)', async () => {
    const exec = scripted([{ argv: ['ip', 'netns', 'exec', 'x', 'nft', '-f', '-'] }])
    await new NftDriver({ exec, mode: 'spawn', nftArgv: ['ip', 'netns', 'exec', 'x', 'nft'] }).teardown()
    exec.done()
  })
  it('classifies stderr', () => {
    expect(nftErrorCode('Error: Could not process rule: No such file or directory')).toBe('WGPMP_FORWARD_MISSING')
    expect(nftErrorCode('Error: syntax error')).toBe('WGPMP_KERNEL_REFUSED')
  })
})

describe('NftDriver modes', () => {
  const base = { publicV4: ['198.51.100.1'], wgInterfaces: ['wg0'] }
  it('asks for the library by default; nft run through another argv (a namespace) rules it out', () => {
    expect(new NftDriver({ exec: scripted([]) }).mode).toBe('library')
    const d = new NftDriver({ exec: scripted([]), nftArgv: ['ip', 'netns', 'exec', 'x', 'nft'] })
    expect(d.mode).toBe('session')
    expect(d.fallback).toMatch(/ip netns exec x nft, in another namespace/)
    expect(new NftDriver({ exec: scripted([]), mode: 'session' }).fallback).toBeNull()
  })
  it('falls back to the session, and says why, when libnftables cannot be loaded', async () => {
    const exec = scripted([{ argv: ['nft', '-f', '-'] }])
    const d = new NftDriver({ exec, libnftables: 'libwgpmp-test-missing.so.9', baseRuleset: 'table inet wgpmp { }' })
    await d.ensureBase(base)
    exec.done()
    expect(d.mode).toBe('session')
    expect(d.fallback).toMatch(/^libnftables \(libwgpmp-test-missing\.so\.9\) through koffi: .*No such file/)
    d.close()
  })
})

describe('NftDriver session fallback', () => {
  it('when `nft -i` cannot run, the batch goes through one nft -j -f, and so do later ones', async () => {
    const nft = '/nonexistent/wgpmp-test-nft'
    const calls: string[][] = []
    const exec: Exec = (file, args) => {
      calls.push([file, ...args.slice(0, 2)])
      return Promise.resolve({ stdout: '', stderr: '', exitCode: 0 })
    }
    const d = new NftDriver({ exec, mode: 'session', nftArgv: [nft] })
    await d.apply([{ op: 'add', forward: fwd }])
    expect(d.mode).toBe('spawn')
    expect(d.fallback).toMatch(/^session: nft session exited \(127\)/)
    await d.apply([{ op: 'delete', forward: fwd }])
    expect(calls).toEqual([
      [nft, '-j', '-f'],
      [nft, '-j', '-f'],
    ])
  })
})

describe('NftLib', () => {
  it('a library that is not there is a WGPMP_EXEC_FAILED error naming it', async () => {
    await expect(NftLib.open('libwgpmp-test-missing.so.9')).rejects.toMatchObject({
      code: 'WGPMP_EXEC_FAILED',
      message: expect.stringContaining('libwgpmp-test-missing.so.9') as string,
    })
  })
  // A command libnftables rejects while parsing never reaches the kernel: no root, no netns needed.
  it.runIf(hasLibnftables)("returns nft's error text for a bad document, one call after another, and rejects once closed", async () => {
    const lib = await NftLib.open()
    const bad = JSON.stringify({ nftables: [{ frobnicate: { table: { family: 'inet', name: 'wgpmp' } } }] })
    const [a, b] = await Promise.all([lib.run(bad), lib.run('{"nftables": [')])
    expect(a).toMatch(/Error: .*(Unknown object|Parsing command array)/)
    expect(b).toMatch(/Error/)
    await lib.close()
    await expect(lib.run(bad)).rejects.toMatchObject({ code: 'WGPMP_EXEC_FAILED' })
  })
})
