/** The one pino logger. Components get `log.child({ component })` through their constructors. */
import { pino, type Logger } from 'pino'

export type { Logger }

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return destination ? pino({ level, base: { name: 'wgpmp' } }, destination) : pino({ level, base: { name: 'wgpmp' } })
}

/** A logger that writes nothing (tests). */
export const silentLogger = (): Logger => pino({ level: 'silent' })
