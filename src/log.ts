/**
 * The one pino logger. Components get `log.child({ component })` through their constructors.
 * Format: JSON lines (the default off a terminal), or "pretty": one readable line per record,
 * written by a small in-process formatter (no pino-pretty, no worker thread; Node 18 compatible).
 */
import { Writable } from 'node:stream'
import { pino, type Logger } from 'pino'

export type { Logger }

export type LogFormat = 'json' | 'pretty' | 'auto'

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' }
const COLORS: Record<number, string> = { 10: '90', 20: '36', 30: '32', 40: '33', 50: '31', 60: '35' }
const SKIP = new Set(['level', 'time', 'pid', 'hostname', 'name', 'msg', 'component', 'v'])

const value = (v: unknown): string => {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v)
  if (v && typeof v === 'object' && 'message' in v && 'stack' in v) return JSON.stringify((v as { message: unknown }).message)
  return JSON.stringify(v) ?? String(v)
}

/** One pino JSON record as "12:00:01.234 INFO  natpmp: lease created client=10.8.0.2 externalPort=43956". */
export function prettyLine(json: string, color = false): string {
  let r: Record<string, unknown>
  try {
    r = JSON.parse(json) as Record<string, unknown>
  } catch {
    return json
  }
  const level = typeof r.level === 'number' ? r.level : 30
  const t = typeof r.time === 'number' ? new Date(r.time).toISOString().slice(11, 23) : ''
  const name = (LEVELS[level] ?? String(level)).padEnd(5)
  const lv = color ? `\x1b[${COLORS[level] ?? '0'}m${name}\x1b[0m` : name
  const comp = typeof r.component === 'string' ? `${r.component}: ` : ''
  const fields = Object.entries(r)
    .filter(([k]) => !SKIP.has(k))
    .map(([k, v]) => `${k}=${value(v)}`)
  const err = r.err as { stack?: unknown } | undefined
  const stack = level >= 50 && typeof err?.stack === 'string' ? '\n  ' + err.stack.split('\n').join('\n  ') : ''
  return `${t} ${lv} ${comp}${typeof r.msg === 'string' ? r.msg : ''}${fields.length ? ' ' + fields.join(' ') : ''}${stack}`
}

/** A destination that turns pino's JSON lines into pretty lines on `out`. */
export function prettyStream(out: NodeJS.WritableStream, color = false): Writable {
  let rest = ''
  return new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      rest += chunk.toString()
      const lines = rest.split('\n')
      rest = lines.pop() ?? ''
      if (lines.length > 0) out.write(lines.map((l) => prettyLine(l, color)).join('\n') + '\n')
      cb()
    },
  })
}

/** 'auto': pretty on a terminal, JSON otherwise. */
export const resolveFormat = (f: LogFormat, isTTY: boolean): 'json' | 'pretty' => (f === 'auto' ? (isTTY ? 'pretty' : 'json') : f)

export function createLogger(level: string, destination?: NodeJS.WritableStream, format: LogFormat = 'json'): Logger {
  const opts = { level, base: { name: 'wgpmp' } }
  const out = destination ?? process.stdout
  const isTTY = (out as { isTTY?: boolean }).isTTY === true
  if (resolveFormat(format, isTTY) === 'pretty') return pino(opts, prettyStream(out, isTTY && !process.env.NO_COLOR))
  return destination ? pino(opts, destination) : pino(opts)
}

/** A logger that writes nothing (tests). */
export const silentLogger = (): Logger => pino({ level: 'silent' })
