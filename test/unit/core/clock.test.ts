import { describe, expect, it } from 'vitest'
import { FakeClock, repeat } from '../../../src/core/clock.js'

const settle = () => new Promise((r) => setImmediate(r))

describe('repeat', () => {
  it('runs every ms after the previous run ended, never two at once, and stops when cancelled', async () => {
    const clock = new FakeClock(0)
    const starts: number[] = []
    let finish: (() => void) | null = null
    const cancel = repeat(clock, 100, () => {
      starts.push(clock.now())
      return new Promise<void>((r) => (finish = r))
    })
    clock.advance(99)
    expect(starts).toEqual([])
    clock.advance(1)
    expect(starts).toEqual([100])
    clock.advance(500) // the run is still going: no second one
    expect(starts).toEqual([100])
    finish!()
    await settle()
    clock.advance(99)
    expect(starts).toEqual([100])
    clock.advance(1)
    expect(starts).toEqual([100, 700]) // 100 ms after the first ended (at 600)
    cancel()
    finish!()
    await settle()
    clock.advance(1000)
    expect(starts).toEqual([100, 700])
  })

  it('a run that rejects is followed by the next one, on time', async () => {
    const clock = new FakeClock(0)
    let runs = 0
    repeat(clock, 10, () => (runs++, Promise.reject(new Error('boom'))))
    for (let i = 0; i < 3; i++) {
      clock.advance(10)
      await settle()
    }
    expect(runs).toBe(3)
  })
})
