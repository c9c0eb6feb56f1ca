import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const FIXTURE = fileURLToPath(new URL('../../fixtures/signals/stop-during-child.ts', import.meta.url))

/** Runs the fixture, sends it `signals` once it is ready (a child process running), returns how it ended. */
function run(signals: NodeJS.Signals[]): Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    const guard = setTimeout(() => child.kill('SIGKILL'), 15_000)
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (c: string) => {
      out += c
      if (c.includes('ready')) signals.forEach((s, k) => setTimeout(() => child.kill(s), 50 * (k + 1)))
    })
    child.on('error', reject)
    child.on('exit', (code, signal) => {
      clearTimeout(guard)
      resolve({ code, signal, out })
    })
  })
}

describe('stop signals', () => {
  // With process.once the process died of the SIGTERM (exit null, signal SIGTERM): signal-exit,
  // loaded by execa while a child runs, re-raised it once our listener had removed itself.
  it('a SIGTERM while a child process runs reaches the handler, and the process exits 0', async () => {
    const r = await run(['SIGTERM'])
    expect(r).toMatchObject({ code: 0, signal: null })
    expect(r.out).toContain('stopping on SIGTERM')
  }, 20_000)

  it('a second signal during the stop is reported and does not kill the process', async () => {
    const r = await run(['SIGINT', 'SIGTERM'])
    expect(r).toMatchObject({ code: 0, signal: null })
    expect(r.out).toContain('stopping on SIGINT')
    expect(r.out).toContain('already stopping (SIGTERM)')
  }, 20_000)
})
