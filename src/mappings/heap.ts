/** A binary min-heap of (deadline, id) pairs with lazy deletion: the caller skips stale ids. */

export class DeadlineHeap {
  private at: number[] = []
  private ids: number[] = []

  get size(): number {
    return this.at.length
  }

  push(deadline: number, id: number): void {
    this.at.push(deadline)
    this.ids.push(id)
    let i = this.at.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (this.at[p]! <= deadline) break
      this.swap(i, p)
      i = p
    }
  }

  /** The smallest deadline, or null when empty. */
  peek(): { deadline: number; id: number } | null {
    return this.at.length === 0 ? null : { deadline: this.at[0]!, id: this.ids[0]! }
  }

  pop(): void {
    const last = this.at.length - 1
    if (last < 0) return
    this.swap(0, last)
    this.at.pop()
    this.ids.pop()
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < this.at.length && this.at[l]! < this.at[m]!) m = l
      if (r < this.at.length && this.at[r]! < this.at[m]!) m = r
      if (m === i) break
      this.swap(i, m)
      i = m
    }
  }

  clear(): void {
    this.at = []
    this.ids = []
  }

  private swap(a: number, b: number): void {
    const t = this.at[a]!
    this.at[a] = this.at[b]!
    this.at[b] = t
    const u = this.ids[a]!
    this.ids[a] = this.ids[b]!
    this.ids[b] = u
  }
}
