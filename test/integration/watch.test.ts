/** TableWatch against real nft 1.0.x in a throwaway namespace (wgpmp-rb-*): flush ruleset, flush table, monitor killed. */
import { randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import { readBaseRuleset } from '../../src/drivers/nft.js'
import { TableWatch, type LostReason } from '../../src/drivers/watch.js'
import { systemExec } from '../../src/core/exec.js'
import { silentLogger } from '../../src/log.js'
import { systemClock } from '../../src/core/clock.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function ip(args: string[]): Promise<void> {
  const r = await systemExec('ip', args)
  if (r.exitCode !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`)
}

/** Polls cond every 20 ms for at most ms; returns how long it took, or null. */
async function within(ms: number, cond: () => boolean): Promise<number | null> {
  const start = Date.now()
  for (let i = 0; i < Math.ceil(ms / 20); i++) {
    if (cond()) return Date.now() - start
    await sleep(20)
  }
  return cond() ? Date.now() - start : null
}

describe.runIf(process.getuid?.() === 0)('TableWatch (netns)', () => {
  let ns: string | null = null
  let watch: TableWatch | null = null

  const nftIn = async (...args: string[]): Promise<void> => {
    const r = await systemExec('ip', ['netns', 'exec', ns!, 'nft', ...args])
    if (r.exitCode !== 0) throw new Error(`nft ${args.join(' ')}: ${r.stderr}`)
  }
  const install = async (): Promise<void> => {
    const r = await systemExec('ip', ['netns', 'exec', ns!, 'nft', '-f', '-'], { input: await readBaseRuleset() })
    if (r.exitCode !== 0) throw new Error(`loading nft/wgpmp.nft: ${r.stderr}`)
  }
  const start = async (o: { intervalMs: number; backoffMs: number; onLost: (r: LostReason) => void | Promise<void> }): Promise<TableWatch> => {
    ns = `wgpmp-rb-${randomBytes(4).toString('hex')}`
    await ip(['netns', 'add', ns])
    await install()
    watch = new TableWatch({
      exec: systemExec,
      clock: systemClock,
      log: silentLogger(),
      nftArgv: ['ip', 'netns', 'exec', ns, 'nft'],
      intervalMs: o.intervalMs,
      backoff: { initialMs: o.backoffMs, maxMs: o.backoffMs },
      onLost: o.onLost,
    })
    watch.start()
    await sleep(500) // nft monitor has no "ready" line: give it time to subscribe
    return watch
  }

  afterEach(async () => {
    await watch?.stop() // kills the monitor (by PID) before its namespace goes
    watch = null
    if (ns) await ip(['netns', 'del', ns])
    ns = null
  })

  it('`nft flush ruleset` is noticed by the monitor within 2 s, and a rebuild in onLost does not loop', async () => {
    const lost: LostReason[] = []
    const w = await start({
      intervalMs: 60_000, // the periodic check cannot be what fires here
      backoffMs: 60_000,
      onLost: async (r) => {
        lost.push(r)
        await install() // what the daemon does: ensureBase + every live forward
      },
    })
    expect(w.monitorPid).toBeGreaterThan(0)
    await nftIn('flush', 'ruleset')
    const ms = await within(2000, () => lost.length > 0)
    expect(ms).not.toBeNull()
    expect(lost).toEqual(['missing'])
    await sleep(1500)
    expect(lost).toEqual(['missing']) // our own re-install was seen by the monitor and ignored
    await nftIn('list', 'table', 'inet', 'wgpmp')
  })

  it('with the monitor killed, the periodic check still fires', async () => {
    const lost: LostReason[] = []
    const w = await start({ intervalMs: 1000, backoffMs: 60_000, onLost: (r) => void lost.push(r) })
    const pid = w.monitorPid
    expect(pid).toBeGreaterThan(0)
    process.kill(pid!, 'SIGKILL') // the monitor we started, by its PID
    expect(await within(2000, () => w.monitorPid === undefined)).not.toBeNull()
    await sleep(300)
    expect(lost).toEqual([]) // its death made the watch check: the table is still there
    await nftIn('flush', 'ruleset')
    expect(await within(2500, () => lost.length > 0)).not.toBeNull()
    expect(lost).toEqual(['missing'])
    expect(w.monitorPid).toBeUndefined() // not restarted yet (60 s backoff): it was the periodic check
  })

  it('`nft flush table` (chains kept, rules gone) is noticed by the monitor, from its rule deletions', async () => {
    const lost: LostReason[] = []
    await start({
      intervalMs: 60_000, // no periodic check in time
      backoffMs: 60_000,
      onLost: async (r) => {
        lost.push(r)
        await install() // the rules back, as the daemon's rebuild does
      },
    })
    await nftIn('flush', 'table', 'inet', 'wgpmp') // one deleted rule, one event, per rule
    expect(await within(2000, () => lost.length > 0)).not.toBeNull()
    await sleep(1000)
    expect(lost).toEqual(['flushed']) // the other events were checked against the rebuilt table
  })

  it('with the monitor killed, the periodic check (the full one then) finds a flushed table', async () => {
    const lost: LostReason[] = []
    const w = await start({ intervalMs: 500, backoffMs: 60_000, onLost: (r) => void lost.push(r) })
    process.kill(w.monitorPid!, 'SIGKILL') // the monitor we started, by its PID
    expect(await within(2000, () => w.monitorPid === undefined)).not.toBeNull()
    await sleep(300)
    await nftIn('flush', 'table', 'inet', 'wgpmp')
    expect(await within(2000, () => lost.length > 0)).not.toBeNull()
    expect(lost[0]).toBe('flushed')
  })
})
