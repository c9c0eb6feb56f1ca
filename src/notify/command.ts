/**
 * Command channel: runs argv (no shell) once per message, the event JSON on stdin and as WGPMP_*
 * environment variables (WGPMP_EVENT, WGPMP_CLIENT_ID, WGPMP_CLIENT_NAME, WGPMP_CLIENT_ADDRESS,
 * WGPMP_PROTOCOL, WGPMP_PUBLIC_ADDRESS, WGPMP_EXTERNAL_PORT, WGPMP_INTERNAL_PORT, WGPMP_ORIGIN,
 * WGPMP_LIFETIME_SECONDS, WGPMP_REASON, WGPMP_TIME; a digest: WGPMP_EVENT=digest and
 * WGPMP_COUNT). The environment is only PATH and these. Past the timeout the child is killed
 * (SIGKILL, by its pid) and the delivery has failed; so has a non-zero exit.
 */
import { runHook } from '../core/exec.js'
import type { Channel, Message } from './dispatcher.js'
import { payloadOf } from './format.js'

export interface CommandOptions {
  name: string
  argv: readonly string[]
  timeoutMs?: number
}

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
    name: o.name,
    kind: 'command',
    target: file ?? '',
    async send(m: Message) {
      const r = await runHook(file!, args, {
        input: JSON.stringify(payloadOf(m)) + '\n',
        env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...envOf(m) },
        timeoutMs: timeout,
      })
      if (r.timedOut) throw new Error(`${file}: killed after ${timeout} ms`)
      if (r.exitCode !== 0) throw new Error(`${file}: exit ${r.exitCode ?? 'by a signal'} ${r.stderr.trim().slice(0, 300)}`.trim())
    },
  }
}
