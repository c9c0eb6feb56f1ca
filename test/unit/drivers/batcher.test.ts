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
