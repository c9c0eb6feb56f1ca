/**
 * Stop signals. The handlers stay installed for the life of the process (`process.on`, never
 * `once`): execa loads signal-exit while a child process runs, and signal-exit re-raises a signal
 * when it finds itself the only listener left. With `once` our listener was gone by the time
 * signal-exit looked, so a SIGTERM that arrived while `wg show` or `ss` ran killed the daemon with
 * its table installed (seen in CI as a mid-start stop with no exit code).
 */
export type StopSignal = 'SIGTERM' | 'SIGINT'

/**
 * Calls `onStop` for the first SIGTERM or SIGINT and `onRepeat` for any later one (the stop is
 * already under way: a second signal does not cut it short). Returns a function that removes the
 * handlers.
 */
export function onStopSignals(onStop: (signal: StopSignal) => void, onRepeat: (signal: StopSignal) => void = () => {}): () => void {
  let seen = false
  const handlers = (['SIGTERM', 'SIGINT'] as const).map((signal) => {
    const handler = (): void => {
      if (seen) return onRepeat(signal)
      seen = true
      onStop(signal)
    }
    process.on(signal, handler)
    return () => process.off(signal, handler)
  })
  return () => handlers.forEach((off) => off())
}
