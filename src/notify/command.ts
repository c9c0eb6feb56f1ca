/**
 * Command channel: runs argv (no shell) once per message, the event JSON on stdin and as WGPMP_*
 * environment variables (WGPMP_EVENT, WGPMP_CLIENT_ID, WGPMP_CLIENT_NAME, WGPMP_CLIENT_ADDRESS,
 * WGPMP_PROTOCOL, WGPMP_PUBLIC_ADDRESS, WGPMP_EXTERNAL_PORT, WGPMP_INTERNAL_PORT, WGPMP_ORIGIN,
 * WGPMP_LIFETIME_SECONDS, WGPMP_REASON, WGPMP_TIME; a digest: WGPMP_EVENT=digest and
 * WGPMP_COUNT). The environment is only PATH and these. Past the timeout the child is killed
 * (SIGKILL, by its pid) and the delivery has failed; so has a non-zero exit.
 */
import { spawn } from 'node:child_process'
import type { Channel, Message } from './dispatcher.js'
import { payloadOf } from './format.js'

export interface CommandOptions {
  name: string
  argv: readonly string[]
  timeoutMs?: number
}

const STDERR_KEEP = 2000

/** The WGPMP_* variables of a message. */
export function envOf(m: Message): Record<string, string> {
  if (m.kind === 'digest') return { WGPMP_EVENT: 'digest', WGPMP_COUNT: String(m.events.length), WGPMP_DROPPED: String(m.dropped) }
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(m.event)) {
    if (v === null || v === undefined) continue
    const key = k === 'type' ? 'EVENT' : k.toUpperCase()
    env[`WGPMP_${key}`] = String(v)
  }
  return env
}

export function commandChannel(o: CommandOptions): Channel {
  const timeout = o.timeoutMs ?? 10_000
  const [file, ...args] = o.argv
  return {
    name: o.name, kind: 'command', target: file ?? '',
    send(m: Message) {
      return new Promise<void>((resolve, reject) => {
        const child = spawn(file!, args, { shell: false, stdio: ['pipe', 'ignore', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...envOf(m) } })
        let stderr = ''
        let timedOut = false
        const timer = setTimeout(() => {
          timedOut = true
          if (child.pid !== undefined) {
            try {
              process.kill(child.pid, 'SIGKILL')
            } catch {
              // already gone
            }
          }
        }, timeout)
        timer.unref()
        child.stderr.setEncoding('utf8')
        child.stderr.on('data', (c: string) => {
          if (stderr.length < STDERR_KEEP) stderr += c
        })
        child.stdin.on('error', () => {}) // a hook that does not read stdin is fine
        child.on('error', (err) => {
          clearTimeout(timer)
          reject(err)
        })
        child.on('close', (code, signal) => {
          clearTimeout(timer)
          if (timedOut) reject(new Error(`${file}: killed after ${timeout} ms`))
          else if (code === 0) resolve()
          else reject(new Error(`${file}: exit ${code ?? signal} ${stderr.trim().slice(0, 300)}`.trim()))
        })
        child.stdin.end(JSON.stringify(payloadOf(m)) + '\n')
      })
    },
  }
}
