/**
 * Components: what the daemon started, so that it closes in reverse order, once, whether the
 * start failed half-way or the daemon stops. A close that fails is reported and the rest still run.
 */
export class Components {
  private readonly started: { name: string; close: () => unknown }[] = []
  private closing: Promise<Error[]> | null = null

  /** Registers a started component's close (called in reverse order of registration). */
  add(name: string, close: () => unknown): void {
    this.started.push({ name, close })
  }

  /** Closes everything in reverse order; resolves with the errors (each named after its component). Idempotent. */
  closeAll(onSlow?: (name: string, ms: number) => void): Promise<Error[]> {
    this.closing ??= (async () => {
      const errors: Error[] = []
      for (const c of this.started.reverse()) {
        const t0 = performance.now()
        const slow = onSlow ? setTimeout(() => onSlow(c.name, performance.now() - t0), 1_000) : null
        try {
          await c.close()
        } catch (e) {
          errors.push(new Error(`closing ${c.name}: ${e instanceof Error ? e.message : String(e)}`, { cause: e }))
        } finally {
          if (slow) clearTimeout(slow)
        }
      }
      return errors
    })()
    return this.closing
  }
}
