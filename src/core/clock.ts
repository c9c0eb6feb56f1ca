/**
 * Clock: the only source of time. Monotonic milliseconds for leases, timers and the NAT-PMP epoch;
 * wall time (unix ms) only where a time must mean something across a restart (the state file,
 * WireGuard's handshake times, the API's timestamps).
 */

export type Cancel = () => void

export interface Clock {
  /** Monotonic milliseconds; only differences are meaningful. */
  now(): number
  /** Wall time, unix ms. It may jump (NTP, an admin): never measure a duration with it. */
  wall(): number
  /** Calls fn once after ms milliseconds unless cancelled. Never keeps the process alive. */
  setTimer(ms: number, fn: () => void): Cancel
}

export const systemClock: Clock = {
  now: () => performance.now(),
  wall: () => Date.now(),
  setTimer(ms, fn) {
    const t = setTimeout(fn, Math.max(0, ms))
    t.unref()
    return () => clearTimeout(t)
  },
}

/**
 * Runs task every ms: the first run ms from now, each next one ms after the previous run ended
 * (never two at once, so a slow run delays the next instead of piling up), until the returned
 * Cancel is called. A run that rejects is not retried sooner.
 */
export function repeat(clock: Clock, ms: number, task: () => Promise<unknown>): Cancel {
  let stopped = false
  let cancel: Cancel = () => {}
  const tick = (): void => {
    if (stopped) return
    const again = (): void => {
      if (!stopped) cancel = clock.setTimer(ms, tick)
    }
    task().then(again, again)
  }
  cancel = clock.setTimer(ms, tick)
  return () => {
    stopped = true
    cancel()
  }
}

/** A clock that moves only when told to; timers fire inside advance(), in deadline order. */
export class FakeClock implements Clock {
  private timers: { at: number; fn: () => void; id: number }[] = []
  private nextId = 0
  /** Wall time minus monotonic time: moves only with setWall(). */
  private wallOffset: number
  constructor(
    private t = 0,
    wallAtStart = 1_767_225_600_000, // 2026-01-01T00:00:00Z
  ) {
    this.wallOffset = wallAtStart - t
  }
  now(): number {
    return this.t
  }
  wall(): number {
    return this.t + this.wallOffset
  }
  /** Sets the wall clock (a jump: NTP, an admin, a reboot); monotonic time does not move. */
  setWall(unixMs: number): void {
    this.wallOffset = unixMs - this.t
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
