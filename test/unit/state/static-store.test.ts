import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { isWgpmpError } from '../../../src/core/errors.js'
import { writeFileAtomic } from '../../../src/state/atomic.js'
import { StaticForwardStore } from '../../../src/state/static-store.js'
import { spec } from '../../helpers/static.js'

describe('writeFileAtomic and StaticForwardStore', () => {
  let dir: string
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'wgpmp-static-'))
  })
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('writes through a temp file, creates the directory, leaves no temp behind, mode 0600', async () => {
    const path = join(dir, 'sub', 'state.json')
    await writeFileAtomic(path, 'one')
    await writeFileAtomic(path, 'two')
    expect(await readFile(path, 'utf8')).toBe('two')
    expect(await readdir(join(dir, 'sub'))).toEqual(['state.json'])
    expect((await stat(path)).mode & 0o777).toBe(0o600)
  })

  it('writes pieces from an async iterable in order; a failing one leaves the old file and no temp', async () => {
    const path = join(dir, 'state.json')
    async function* pieces(fail: boolean) {
      yield '{"a":'
      await new Promise((r) => setImmediate(r))
      yield 'é'.repeat(70_000) // multi-byte text across a large piece
      if (fail) throw new Error('render failed')
      yield '}'
    }
    await writeFileAtomic(path, pieces(false))
    expect(await readFile(path, 'utf8')).toBe(`{"a":${'é'.repeat(70_000)}}`)
    await expect(writeFileAtomic(path, pieces(true))).rejects.toThrow('render failed')
    expect(await readFile(path, 'utf8')).toBe(`{"a":${'é'.repeat(70_000)}}`)
    expect(await readdir(dir)).toEqual(['state.json'])
  })

  it('rejects and leaves the old file when the target cannot be replaced', async () => {
    const path = join(dir, 'state.json')
    await writeFile(path, 'old')
    await expect(writeFileAtomic(join(path, 'x'), 'new')).rejects.toThrow() // parent is a file
    expect(await readFile(path, 'utf8')).toBe('old')
  })

  it('forwards survive a round trip through their records with the same ids', async () => {
    let saves = 0
    const s = new StaticForwardStore([], () => (saves++, Promise.resolve()))
    expect(s.list()).toEqual([])
    const f = { ...spec('27015-27030/udp'), id: 'udp-27015-27030', client: 'oLCGdaDSDw-O', source: 'api' as const, createdAt: '2026-01-01T00:00:00.000Z' }
    await Promise.all([s.put(f), s.put({ ...f, ...spec('8080:80/tcp'), id: 'tcp-8080' })])
    expect(saves).toBe(2)
    expect(s.records()).toMatchObject([
      { id: 'udp-27015-27030', external_port: '27015-27030', internal_port: '27015-27030', protocol: 'udp' },
      { id: 'tcp-8080', external_port: 8080, internal_port: 80 },
    ])
    const again = new StaticForwardStore(s.records(), () => (saves++, Promise.resolve()))
    expect(again.list()).toEqual(s.list())
    expect(await again.delete('tcp-8080')).toBe(true)
    expect(await again.delete('tcp-8080')).toBe(false)
    expect(saves).toBe(3) // an unknown id writes nothing
    expect(again.list().map((x) => x.id)).toEqual(['udp-27015-27030'])
  })

  it('rejects a stored forward that does not parse with WGPMP_STATE_INVALID', () => {
    const bad = { id: 'x', client: 'c', protocol: 'tcp' as const, external_port: '10-20', internal_port: 5, created_at: 't' }
    expect(() => new StaticForwardStore([bad], () => Promise.resolve(), 'state.json')).toThrow(/state\.json: forward x: .*has 1 ports/)
    try {
      new StaticForwardStore([bad], () => Promise.resolve())
    } catch (e) {
      expect(isWgpmpError(e, 'WGPMP_STATE_INVALID')).toBe(true)
    }
  })

  it('a failed save takes the forward back out, and a failed delete puts it back', async () => {
    let fail = true
    const s = new StaticForwardStore([], () => (fail ? Promise.reject(new Error('disk full')) : Promise.resolve()))
    const f = { ...spec('80/tcp'), id: 'tcp-80', client: 'c', source: 'api' as const, createdAt: 't' }
    await expect(s.put(f)).rejects.toThrow('disk full')
    expect(s.list()).toEqual([])
    fail = false
    await s.put(f)
    fail = true
    await expect(s.delete('tcp-80')).rejects.toThrow('disk full')
    expect(s.list()).toEqual([f])
  })
})
