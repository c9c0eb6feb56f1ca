/** Clock: the only source of time for leases and the NAT-PMP epoch (monotonic milliseconds). */

export type Cancel = () => void

export interface Clock {
  /** Monotonic milliseconds; only differences are meaningful. */
  now(): number
  /** Calls fn once after ms milliseconds unless cancelled. Never keeps the process alive. */
  setTimer(ms: number, fn: () => void): Cancel
}

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer(ms, fn) {
    const t = setTimeout(fn, Math.max(0, ms))
    t.unref()
    return () => clearTimeout(t)
  },
}

/** A clock that moves only when told to; timers fire inside advance(), in deadline order. */
export class FakeClock implements Clock {
  private timers: { at: number; fn: () => void; id: number }[] = []
  private nextId = 0
  constructor(private t = 0) {}
  now(): number {
    return this.t
  }
  setTimer(ms: number, fn: () => void): Cancel {
    const id = this.nextId++
    this.timers.push({ at: this.t + Math.max(0, ms), fn, id })
    return () => {
      this.timers = this.timers.filter((x) => x.id !== id)
    }
  }
  advance(ms: number): void {
    const end = this.t + ms
    for (;;) {
      const due = this.timers.filter((x) => x.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0]
      if (!due) break
      this.timers = this.timers.filter((x) => x.id !== due.id)
      this.t = Math.max(this.t, due.at)
      due.fn()
    }
    this.t = end
  }
}
