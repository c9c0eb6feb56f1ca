/**
 * Bench agent in the "internet" namespace: opens real TCP connections to the public address, to
 * check that a forward carries packets right after its NAT-PMP reply (and none after a delete).
 */
import { connect } from 'node:net'
import { nowMs, serve } from '../lib/rpc.js'

serve({
  connect(p: { host: string; port: number; timeoutMs: number }) {
    return new Promise((resolve) => {
      const t0 = nowMs()
      const s = connect({ host: p.host, port: p.port })
      const done = (ok: boolean, error?: string): void => {
        clearTimeout(timer)
        s.destroy()
        resolve({ ok, ms: nowMs() - t0, ...(error === undefined ? {} : { error }) })
      }
      const timer = setTimeout(() => done(false, 'timeout'), p.timeoutMs)
      s.once('connect', () => done(true))
      s.once('error', (e: NodeJS.ErrnoException) => done(false, e.code ?? e.message))
    })
  },
})
