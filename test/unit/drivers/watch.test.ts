/** TableWatch with a fake `nft monitor` child, a scripted exec and a FakeClock. */
import { EventEmitter } from 'node:events'
import { PassThrough } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { countRules, hasChain, isLossEvent, TableWatch, type LostReason, type MonitorProcess } from '../../../src/drivers/watch.js'
import type { Exec, ExecResult } from '../../../src/core/exec.js'
import { silentLogger } from '../../../src/log.js'
import { FakeClock } from '../../../src/core/clock.js'

// nft 1.0.6, captured in a namespace: `nft -j monitor tables` / `nft -j monitor rules` during
// `nft flush ruleset` and `nft flush table`.
const DELETE_OURS = '{"delete": {"table": {"family": "inet", "name": "wgpmp", "handle": 1}}}'
const DELETE_OUR_RULE =
  '{"delete": {"rule": {"family": "inet", "table": "wgpmp", "chain": "prerouting", "handle": 2, "expr": [{"counter": {"packets": 0, "bytes": 0}}]}}}'
const DELETE_OTHER_RULE = '{"delete": {"rule": {"family": "ip", "table": "filter", "chain": "input", "handle": 7, "expr": []}}}'
const ADD_OUR_RULE = '{"add": {"rule": {"family": "inet", "table": "wgpmp", "chain": "prerouting", "handle": 4, "expr": []}}}'
const CHAINS =
  '{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"chain": {"family": "inet", "table": "wgpmp", "name": "prerouting", "handle": 1, "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}}, {"chain": {"family": "ip", "table": "filter", "name": "input", "handle": 1}}]}'
const CHAINS_WITHOUT_OURS =
  '{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"chain": {"family": "ip", "table": "filter", "name": "prerouting", "handle": 1}}]}'
const DELETE_OTHER = '{"delete": {"table": {"family": "ip", "name": "other", "handle": 2}}}'
const ADD_OURS = '{"add": {"table": {"family": "inet", "name": "wgpmp", "handle": 3}}}'
const CHAIN_OK =
  '{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"chain": {"family": "inet", "table": "wgpmp", "name": "prerouting", "handle": 5}}, {"rule": {"family": "inet", "table": "wgpmp", "chain": "prerouting", "handle": 9, "expr": []}}]}'
const CHAIN_EMPTY =
  '{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"chain": {"family": "inet", "table": "wgpmp", "name": "prerouting", "handle": 5}}]}'
const NOT_FOUND: ExecResult = { exitCode: 1, stdout: '', stderr: 'Error: No such file or directory\nlist chain inet wgpmp prerouting\n                 ^^^^^' }
const OK: ExecResult = { exitCode: 0, stdout: CHAIN_OK, stderr: '' }

class FakeChild extends EventEmitter implements MonitorProcess {
  readonly stdout = new PassThrough()
  killed: NodeJS.Signals[] = []
  constructor(readonly pid: number) {
    super()
  }
  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    this.killed.push(signal)
    setImmediate(() => this.emit('exit', null, signal))
    return true
  }
  line(s: string): void {
    this.stdout.write(s + '\n')
  }
}

const tick = async (n = 5): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r))
}

function harness(opts: { table?: () => ExecResult; onLost?: (r: LostReason) => Promise<void> | void } = {}) {
  const clock = new FakeClock(0)
  const children: FakeChild[] = []
  const spawned: (readonly string[])[] = []
  const probes: (readonly string[])[] = []
  const lost: LostReason[] = []
  let state = opts.table ?? (() => OK)
  const exec: Exec = (file, args) => {
    probes.push([file, ...args])
    return Promise.resolve(state())
  }
  const watch = new TableWatch({
    exec,
    clock,
    log: silentLogger(),
    nftArgv: ['ip', 'netns', 'exec', 'ns1', 'nft'],
    spawn: (file, args) => {
      spawned.push([file, ...args])
      const c = new FakeChild(1000 + children.length)
      children.push(c)
      return c
    },
    onLost: async (r) => {
      lost.push(r)
      await opts.onLost?.(r)
    },
  })
  return { clock, children, spawned, probes, lost, watch, setTable: (f: () => ExecResult) => (state = f) }
}

describe('pure helpers', () => {
  it('isLossEvent matches only the deletion of our table or of one of its rules', () => {
    expect(isLossEvent(DELETE_OURS)).toBe(true)
    expect(isLossEvent(DELETE_OUR_RULE)).toBe(true)
    expect(isLossEvent(DELETE_OTHER)).toBe(false)
    expect(isLossEvent(DELETE_OTHER_RULE)).toBe(false)
    expect(isLossEvent(ADD_OURS)).toBe(false)
    expect(isLossEvent(ADD_OUR_RULE)).toBe(false)
    expect(isLossEvent(DELETE_OURS, 'inet', 'other')).toBe(false)
    expect(isLossEvent(DELETE_OUR_RULE, 'inet', 'other')).toBe(false)
    expect(isLossEvent('delete table inet wgpmp')).toBe(false)
    expect(isLossEvent('null')).toBe(false)
  })
  it('hasChain finds a chain in nft -j list chains output', () => {
    expect(hasChain(CHAINS, 'inet', 'wgpmp', 'prerouting')).toBe(true)
    expect(hasChain(CHAINS_WITHOUT_OURS, 'inet', 'wgpmp', 'prerouting')).toBe(false)
    expect(hasChain(CHAINS, 'inet', 'wgpmp', 'input')).toBe(false)
    expect(hasChain('garbage', 'inet', 'wgpmp', 'prerouting')).toBeNull()
  })
  it('countRules counts rule objects in nft -j output', () => {
    expect(countRules(CHAIN_OK)).toBe(1)
    expect(countRules(CHAIN_EMPTY)).toBe(0)
    expect(countRules('garbage')).toBeNull()
    expect(countRules('{}')).toBeNull()
  })
})

describe('TableWatch', () => {
  it('runs `nft -j monitor rules` with the argv prefix and probes the chain with it', async () => {
    const h = harness()
    h.watch.start()
    expect(h.spawned).toEqual([['ip', 'netns', 'exec', 'ns1', 'nft', '-j', 'monitor', 'rules']])
    expect(h.watch.monitorPid).toBe(1000)
    h.clock.advance(5000)
    await tick()
    expect(h.probes).toEqual([['ip', 'netns', 'exec', 'ns1', 'nft', '-j', 'list', 'chain', 'inet', 'wgpmp', 'prerouting']])
    expect(h.lost).toEqual([])
    await h.watch.stop()
  })

  it('a delete event of our table, confirmed missing, calls onLost at once', async () => {
    const h = harness()
    h.watch.start()
    h.setTable(() => NOT_FOUND)
    h.children[0]!.line(DELETE_OTHER)
    await tick()
    expect(h.probes).toHaveLength(0)
    h.children[0]!.line(DELETE_OURS)
    await tick()
    expect(h.lost).toEqual(['missing'])
    expect(h.watch.losses).toBe(1)
    await h.watch.stop()
  })

  it('a deleted rule of our table (a flush), confirmed by an empty chain, calls onLost', async () => {
    const h = harness()
    h.watch.start()
    h.setTable(() => ({ exitCode: 0, stdout: CHAIN_EMPTY, stderr: '' }))
    h.children[0]!.line(DELETE_OTHER_RULE)
    await tick()
    expect(h.probes).toHaveLength(0)
    h.children[0]!.line(DELETE_OUR_RULE)
    await tick()
    expect(h.lost).toEqual(['flushed'])
    await h.watch.stop()
  })

  it('our own re-create (delete + add in one transaction) is checked and ignored', async () => {
    const h = harness()
    h.watch.start()
    h.children[0]!.line(DELETE_OURS)
    h.children[0]!.line(ADD_OURS)
    await tick()
    expect(h.probes).toHaveLength(1)
    expect(h.lost).toEqual([])
    await h.watch.stop()
  })

  it('events during onLost (the rebuild itself) lead to one check after it, not a loop', async () => {
    let release = (): void => {}
    const h = harness({ table: () => NOT_FOUND, onLost: () => new Promise<void>((r) => (release = r)) })
    h.watch.start()
    h.children[0]!.line(DELETE_OURS)
    await tick()
    expect(h.lost).toEqual(['missing'])
    h.setTable(() => OK) // the rebuild installed it again...
    for (let i = 0; i < 5; i++) h.children[0]!.line(DELETE_OURS) // ...and the monitor saw its delete+add
    await tick()
    release()
    await tick()
    expect(h.probes).toHaveLength(2)
    expect(h.lost).toEqual(['missing'])
    await h.watch.stop()
  })

  it('the periodic check finds a missing or flushed table without any event', async () => {
    const h = harness()
    h.watch.start()
    h.setTable(() => ({ exitCode: 0, stdout: CHAIN_EMPTY, stderr: '' }))
    h.clock.advance(4999)
    await tick()
    expect(h.lost).toEqual([])
    h.clock.advance(1)
    await tick()
    expect(h.lost).toEqual(['flushed'])
    h.setTable(() => NOT_FOUND)
    h.clock.advance(5000)
    await tick()
    expect(h.lost).toEqual(['flushed', 'missing'])
    await h.watch.stop()
  })

  it('with listChains given, the periodic check is the light one while the monitor runs; events and a dead monitor get the full one', async () => {
    const clock = new FakeClock(0)
    const full: string[] = []
    const light: number[] = []
    const lost: LostReason[] = []
    const children: FakeChild[] = []
    let chains = CHAINS
    let chain = OK
    let failSpawn = false
    const watch = new TableWatch({
      exec: (file, args) => (full.push([file, ...args].join(' ')), Promise.resolve(chain)),
      listChains: () => (light.push(clock.now()), Promise.resolve({ exitCode: 0, stdout: chains, stderr: '' })),
      clock,
      log: silentLogger(),
      spawn: () => {
        if (failSpawn) throw new Error('EAGAIN')
        const c = new FakeChild(7 + children.length)
        children.push(c)
        return c
      },
      onLost: (r) => void lost.push(r),
    })
    watch.start()
    clock.advance(5000)
    await tick()
    expect(light).toEqual([5000]) // light: no nft process, no element dump
    expect(full).toEqual([])
    chains = CHAINS_WITHOUT_OURS // someone deleted the table
    clock.advance(5000)
    await tick()
    expect(lost).toEqual(['missing'])
    chains = CHAINS
    chain = { exitCode: 0, stdout: CHAIN_EMPTY, stderr: '' } // someone flushed it: only the monitor and the full check see that
    children[0]!.line(DELETE_OUR_RULE)
    await tick()
    expect(full).toEqual(['nft -j list chain inet wgpmp prerouting'])
    expect(lost).toEqual(['missing', 'flushed'])
    chain = OK
    children[0]!.emit('exit', 1, null) // the monitor died: checked fully at once
    await tick()
    expect(full).toHaveLength(2)
    clock.advance(5000) // restarted 500 ms later, so the periodic check at 15,000 ms is light again
    await tick()
    expect(children).toHaveLength(2)
    expect(light.at(-1)).toBe(15_000)
    expect(full).toHaveLength(2)
    failSpawn = true
    children[1]!.emit('exit', 1, null) // dies again and cannot be restarted
    await tick()
    expect(full).toHaveLength(3)
    clock.advance(5000) // the periodic check at 20,000 ms, with no monitor: the full one
    await tick()
    expect(full).toHaveLength(4)
    expect(light.at(-1)).toBe(15_000)
    expect(lost).toEqual(['missing', 'flushed'])
    await watch.stop()
  })

  it('other nft failures are logged, never reported as lost', async () => {
    const h = harness({ table: () => ({ exitCode: 1, stdout: '', stderr: 'Error: Operation not permitted' }) })
    h.watch.start()
    h.clock.advance(5000)
    await tick()
    expect(h.probes).toHaveLength(1)
    expect(h.lost).toEqual([])
    await h.watch.stop()
  })

  it('a dead monitor triggers a check and is restarted with doubling backoff, reset after a healthy run', async () => {
    const h = harness()
    h.watch.start()
    h.children[0]!.emit('exit', 1, null)
    await tick()
    expect(h.probes).toHaveLength(1) // checked at once: events may have been missed
    h.clock.advance(499)
    expect(h.children).toHaveLength(1)
    h.clock.advance(1)
    expect(h.children).toHaveLength(2)
    h.children[1]!.emit('exit', 1, null)
    h.clock.advance(999)
    expect(h.children).toHaveLength(2)
    h.clock.advance(1)
    expect(h.children).toHaveLength(3)
    for (let i = 0; i < 10; i++) {
      h.children.at(-1)!.emit('error', new Error('spawn nft ENOENT'))
      h.clock.advance(30_000) // capped at 30 s
    }
    expect(h.children).toHaveLength(13)
    expect(h.watch.monitorRestarts).toBe(12)
    h.clock.advance(60_000) // this one ran a minute: healthy
    h.children.at(-1)!.emit('exit', null, 'SIGKILL')
    h.clock.advance(500)
    expect(h.children).toHaveLength(14)
    await h.watch.stop()
  })

  it('stop() kills the monitor by PID, and nothing runs or respawns afterwards', async () => {
    const h = harness({ table: () => NOT_FOUND })
    h.watch.start()
    await h.watch.stop()
    expect(h.children[0]!.killed).toEqual(['SIGTERM'])
    expect(h.watch.monitorPid).toBeUndefined()
    h.clock.advance(600_000)
    h.children[0]!.line(DELETE_OURS)
    await tick()
    expect(h.children).toHaveLength(1)
    expect(h.probes).toHaveLength(0)
    expect(h.lost).toEqual([])
  })

  it('a spawn that throws is retried with backoff', async () => {
    const clock = new FakeClock()
    let tries = 0
    const watch = new TableWatch({
      exec: () => Promise.resolve(OK),
      clock,
      log: silentLogger(),
      onLost: () => {},
      spawn: () => {
        tries++
        throw new Error('EAGAIN')
      },
    })
    watch.start()
    expect(tries).toBe(1)
    clock.advance(500)
    expect(tries).toBe(2)
    clock.advance(1000)
    expect(tries).toBe(3)
    await watch.stop()
    clock.advance(100_000)
    expect(tries).toBe(3)
  })
})
