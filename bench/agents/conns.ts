/**
 * Bench agent in the daemon's namespace: host load made of established TCP connections (issue 10
 * §5). Started twice (each process holds ~10,000 descriptors, the limit here is 20,000): one
 * instance listens on a loopback port and keeps every accepted socket, the other opens `n` client
 * connections to it and holds them. Nothing is sent on them. Bounded in count and time; `close`
 * (and the agent's exit) destroys every socket.
 */
import { connect, createServer, type Server, type Socket } from 'node:net'
import { nowMs, serve } from '../lib/rpc.js'

const MAX = 20_000
const sockets = new Set<Socket>()
let server: Server | null = null

function keep(s: Socket): void {
  sockets.add(s)
  s.on('error', () => {})
  s.on('close', () => sockets.delete(s))
}

function closeAll(): number {
  const n = sockets.size
  for (const s of sockets) s.destroy()
  sockets.clear()
  server?.close()
  server = null
  return n
}

serve(
  {
    /** Listens on host:port and keeps every connection it accepts (at most MAX). */
    listen(p: { host: string; port: number }) {
      return new Promise((resolve, reject) => {
        const srv = createServer((s) => {
          if (sockets.size >= MAX) s.destroy()
          else keep(s)
        })
        srv.once('error', reject)
        srv.listen({ host: p.host, port: p.port, backlog: 4096 }, () => {
          srv.off('error', reject)
          server = srv
          resolve(null)
        })
      })
    },
    /** Opens n connections to host:port, `window` at a time, until done or budgetMs; how many are open. */
    async connect(p: { host: string; port: number; n: number; window: number; timeoutMs: number; budgetMs: number }) {
      const t0 = nowMs()
      const deadline = t0 + p.budgetMs
      const n = Math.min(p.n, MAX)
      let next = 0
      let failed = 0
      const one = (): Promise<void> =>
        new Promise((resolve) => {
          const s = connect({ host: p.host, port: p.port })
          const timer = setTimeout(() => {
            failed++
            s.destroy()
            resolve()
          }, p.timeoutMs)
          s.once('connect', () => {
            clearTimeout(timer)
            keep(s)
            resolve()
          })
          s.once('error', () => {
            clearTimeout(timer)
            failed++
            resolve()
          })
        })
      const worker = async (): Promise<void> => {
        while (next < n && nowMs() < deadline) {
          next++
          await one()
        }
      }
      await Promise.all(Array.from({ length: Math.max(1, p.window) }, worker))
      return { open: sockets.size, failed, ms: nowMs() - t0 }
    },
    count() {
      return sockets.size
    },
    close() {
      return { closed: closeAll() }
    },
  },
  () => {
    closeAll()
  },
)
