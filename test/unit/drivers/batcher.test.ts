import { describe, expect, it } from 'vitest'
import { compact, GroupCommit } from '../../../src/drivers/batcher.js'
import type { Forward, ForwardChange } from '../../../src/core/forward.js'
import { MemoryDriver } from '../../../src/drivers/memory.js'
import { WgpmpError } from '../../../src/core/errors.js'

const f = (externalPort: number, internalAddress = '10.8.0.2'): Forward => ({ protocol: 'tcp', externalPort, internalAddress, internalPort: externalPort })
const add = (p: number): ForwardChange => ({ op: 'add', forward: f(p) })
const del = (p: number): ForwardChange => ({ op: 'delete', forward: f(p) })

async function setup() {
  const driver = new MemoryDriver()
  await driver.ensureBase({ publicV4: ['198.51.100.1'], wgInterfaces: ['wg0'] })
  return { driver, gc: new GroupCommit(driver) }
}

describe('GroupCommit', () => {
  it('coalesces requests that arrive while a batch is in flight into the next batch', async () => {
    const { driver, gc } = await setup()
    const first = gc.submit([add(1)])
    const rest = [2, 3, 4, 5].map((p) => gc.submit([add(p)]))
    await Promise.all([first, ...rest])
    expect(driver.batches).toBe(2)
    expect(driver.lastBatch).toHaveLength(4)
    expect(driver.dump()).toHaveLength(5)
  })
  it('settles each request only after its batch committed', async () => {
    const { driver, gc } = await setup()
    let seen = -1
    await gc.submit([add(1)]).then(async () => {
      seen = (await driver.list()).length
    })
    expect(seen).toBe(1)
  })
  it('one bad change in a coalesced batch fails only its own request', async () => {
    const { driver, gc } = await setup()
    await gc.submit([add(1)])
    const inflight = gc.submit([add(2)])
    const bad = gc.submit([add(1)]) // exists
    const good = gc.submit([add(3)])
    await inflight
    await expect(bad).rejects.toBeInstanceOf(WgpmpError)
    await expect(good).resolves.toBeUndefined()
    expect(driver.dump()).toEqual(['tcp/1 -> 10.8.0.2:1', 'tcp/2 -> 10.8.0.2:2', 'tcp/3 -> 10.8.0.2:3'])
  })
  it('an empty submission never reaches the driver', async () => {
    const { driver, gc } = await setup()
    await gc.submit([])
    expect(driver.batches).toBe(0)
  })
})

describe('compact', () => {
  it('drops an add that a later delete cancels', () => {
    expect(compact([add(1), add(2), del(1)])).toEqual([add(2)])
  })
  it('keeps delete-then-add (a move) and unrelated deletes', () => {
    expect(compact([del(1), add(1), del(3)])).toEqual([del(1), add(1), del(3)])
  })
  it('does not cancel a delete of a different target', () => {
    const other: ForwardChange = { op: 'delete', forward: f(1, '10.8.0.9') }
    expect(compact([add(1), other])).toEqual([add(1), other])
  })
})

/** A driver whose every apply() waits until the test releases it: a kernel as slow as the test says. */
class SlowDriver {
  readonly log: string[] = []
  private releases: (() => void)[] = []
  apply(changes: readonly ForwardChange[]): Promise<void> {
    const ports = changes.map((c) => c.forward.externalPort).join('+')
    this.log.push(`apply ${ports}`)
    return new Promise<void>((resolve) => this.releases.push(() => (this.log.push(`done ${ports}`), resolve())))
  }
  /** Batches waiting for release. */
  get inFlight(): number {
    return this.releases.length
  }
  release(): void {
    const r = this.releases.shift()
    if (!r) throw new Error('no batch in flight')
    r()
  }
}

/** Lets every pending callback run: far more ticks than the old polling (10,000 setImmediate) waited. */
const settle = async (ms = 120): Promise<void> => {
  await new Promise((r) => setTimeout(r, ms))
}

describe('GroupCommit as a queue (exclusive work, idle)', () => {
  it('exclusive waits for the batch in flight however long, runs alone, and submissions made meanwhile wait for it', async () => {
    const driver = new SlowDriver()
    const gc = new GroupCommit(driver)
    const a = gc.submit([add(1)])
    expect(driver.log).toEqual(['apply 1'])
    let releaseE: () => void = () => {}
    const e = gc.exclusive(async () => {
      driver.log.push('exclusive start')
      await new Promise<void>((r) => (releaseE = r))
      driver.log.push('exclusive end')
      return 'rebuilt'
    })
    const b = gc.submit([add(2)])
    await settle()
    expect(driver.log).toEqual(['apply 1']) // neither the exclusive work nor b went ahead
    driver.release()
    await a
    await settle(10)
    expect(driver.log).toEqual(['apply 1', 'done 1', 'exclusive start'])
    const c = gc.submit([add(3)]) // made while the exclusive work runs
    await settle()
    expect(driver.log).toEqual(['apply 1', 'done 1', 'exclusive start'])
    releaseE()
    expect(await e).toBe('rebuilt')
    await settle(10)
    expect(driver.log).toEqual(['apply 1', 'done 1', 'exclusive start', 'exclusive end', 'apply 2+3'])
    driver.release()
    await Promise.all([b, c])
    expect(driver.inFlight).toBe(0)
  })

  it('exclusive runs before submissions that were already queued behind the batch in flight', async () => {
    const driver = new SlowDriver()
    const gc = new GroupCommit(driver)
    const a = gc.submit([add(1)])
    const b = gc.submit([add(2)]) // queued: waits for a
    const e = gc.exclusive(() => {
      driver.log.push('exclusive')
      return Promise.resolve()
    })
    driver.release()
    await Promise.all([a, e])
    await settle(10)
    driver.release()
    await b
    expect(driver.log).toEqual(['apply 1', 'done 1', 'exclusive', 'apply 2', 'done 2'])
  })

  it('two exclusive calls run one after the other, in order; a failing one rejects alone and the queue goes on', async () => {
    const driver = new SlowDriver()
    const gc = new GroupCommit(driver)
    const a = gc.submit([add(1)])
    let inside = 0
    let overlap = false
    const work =
      (name: string, fail = false) =>
      async () => {
        overlap ||= ++inside > 1
        driver.log.push(name)
        await settle(20)
        inside--
        if (fail) throw new Error(`${name} failed`)
        return name
      }
    const e1 = gc.exclusive(work('e1', true))
    const e2 = gc.exclusive(work('e2'))
    driver.release()
    await a
    await expect(e1).rejects.toThrow('e1 failed')
    expect(await e2).toBe('e2')
    expect(overlap).toBe(false)
    const b = gc.submit([add(2)])
    await settle(10)
    driver.release()
    await b
    expect(driver.log).toEqual(['apply 1', 'done 1', 'e1', 'e2', 'apply 2', 'done 2'])
  })

  it('idle() is not resolved while a 300 ms batch runs, and resolves when it and what queued behind it are done', async () => {
    const apply = (): Promise<void> => new Promise((r) => setTimeout(r, 300))
    const gc = new GroupCommit({ apply })
    const t0 = performance.now()
    const first = gc.submit([add(1)])
    const second = gc.submit([add(2)]) // queued behind the first: idle waits for it too (another 300 ms)
    let idleAt: number | null = null
    const idle = gc.idle().then(() => (idleAt = performance.now() - t0))
    await settle(150)
    expect(idleAt).toBeNull()
    await Promise.all([first, second, idle])
    expect(idleAt).not.toBeNull()
    expect(idleAt!).toBeGreaterThanOrEqual(590)
    expect(gc.stats.batches).toBe(2)
  })

  it('idle() waits for exclusive work too, and resolves at once when nothing is queued or in flight', async () => {
    const gc = new GroupCommit(new SlowDriver())
    let idle = false
    await gc.idle().then(() => (idle = true))
    expect(idle).toBe(true)
    let release: () => void = () => {}
    const e = gc.exclusive(() => new Promise<void>((r) => (release = r)))
    idle = false
    const p = gc.idle().then(() => (idle = true))
    await settle()
    expect(idle).toBe(false)
    release()
    await Promise.all([e, p])
    expect(idle).toBe(true)
  })

  it('absorbQueued: a rebuild absorbs the submissions queued when it starts (resolved, no batch of their own); later ones still wait and go after', async () => {
    const driver = new SlowDriver()
    const gc = new GroupCommit(driver)
    const a = gc.submit([add(1)])
    const queued = gc.submit([add(2)]) // already in the state the rebuild writes
    let releaseE: () => void = () => {}
    const e = gc.exclusive(
      () => {
        driver.log.push('rebuild')
        return new Promise<void>((r) => (releaseE = r))
      },
      { absorbQueued: true },
    )
    driver.release()
    await a
    await settle(10)
    const later = gc.submit([add(3)]) // made while the rebuild runs
    let queuedDone = false
    void queued.then(() => (queuedDone = true))
    await settle(10)
    expect(queuedDone).toBe(false) // resolves with the rebuild, not before
    releaseE()
    await Promise.all([e, queued])
    await settle(10)
    driver.release()
    await later
    expect(driver.log).toEqual(['apply 1', 'done 1', 'rebuild', 'apply 3', 'done 3'])
  })

  it('absorbQueued: when the rebuild fails, the absorbed submissions go back to the head of the queue and are sent', async () => {
    const driver = new SlowDriver()
    const gc = new GroupCommit(driver)
    const a = gc.submit([add(1)])
    const queued = gc.submit([add(2)])
    const e = gc.exclusive(() => Promise.reject(new Error('rebuild refused')), { absorbQueued: true })
    const later = gc.submit([add(3)])
    driver.release()
    await a
    await expect(e).rejects.toThrow('rebuild refused')
    await settle(10)
    driver.release()
    await Promise.all([queued, later])
    expect(driver.log).toEqual(['apply 1', 'done 1', 'apply 2+3', 'done 2+3'])
  })
})
