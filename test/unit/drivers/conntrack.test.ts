/** conntrack flush: argv, exit-code handling, listing parser (captured output) and the bounded big-batch path. */
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { conntrackFlushArgs, conntrackListArgs, flushConntrack, parseConntrackList, parseDeleteResult } from '../../../src/drivers/conntrack.js'
import { ConntrackFlows } from '../../../src/drivers/flows.js'
import { silentLogger } from '../../../src/log.js'
import type { Forward, Protocol } from '../../../src/core/forward.js'
import { WgpmpError } from '../../../src/core/errors.js'
import type { Exec, ExecResult } from '../../../src/core/exec.js'

const PUB = '198.51.100.1'
const fwd = (protocol: Protocol, externalPort: number, internalAddress = '10.8.0.2', internalPort = externalPort): Forward => ({
  protocol,
  externalPort,
  internalAddress,
  internalPort,
})
const fixture = (name: string): string => readFileSync(new URL(`../../fixtures/conntrack/${name}`, import.meta.url), 'utf8')

// What conntrack-tools 1.4.7 printed in the lab (see test/fixtures/conntrack/README.md).
const NONE: ExecResult = { exitCode: 1, stdout: '', stderr: 'conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.' }
const ONE: ExecResult = {
  exitCode: 0,
  stdout:
    'tcp      6 431999 ESTABLISHED src=198.51.100.254 dst=198.51.100.1 sport=51720 dport=40002 src=10.8.0.2 dst=198.51.100.254 sport=8082 dport=51720 [ASSURED] mark=0 use=1',
  stderr: 'conntrack v1.4.7 (conntrack-tools): 1 flow entries have been deleted.',
}

/** A scripted exec that records every call and answers from a function. */
function scripted(answer: (args: readonly string[]) => ExecResult | Error) {
  const calls: { file: string; args: readonly string[] }[] = []
  const exec: Exec = (file, args) => {
    calls.push({ file, args })
    const a = answer(args)
    return a instanceof Error ? Promise.reject(a) : Promise.resolve(a)
  }
  return { exec, calls }
}

describe('conntrackFlushArgs', () => {
  it('matches the original destination and the DNAT target (checked against conntrack 1.4.7 in the lab)', () => {
    expect(conntrackFlushArgs(fwd('tcp', 40002, '10.8.0.2', 8082), PUB)).toEqual([
      '-D',
      '-p',
      'tcp',
      '--orig-dst',
      PUB,
      '--dport',
      '40002',
      '--reply-src',
      '10.8.0.2',
      '--reply-port-src',
      '8082',
    ])
    expect(conntrackFlushArgs(fwd('udp', 51413), PUB).slice(0, 3)).toEqual(['-D', '-p', 'udp'])
    expect(conntrackListArgs('udp', PUB)).toEqual(['-L', '-p', 'udp', '--orig-dst', PUB, '--dst-nat'])
  })
})

describe('parseDeleteResult', () => {
  it('exit 1 with "0 flow entries have been deleted" is success with 0', () => {
    expect(parseDeleteResult(NONE)).toEqual({ ok: true, deleted: 0 })
    expect(parseDeleteResult(ONE)).toEqual({ ok: true, deleted: 1 })
  })
  it('any other failure is an error with its first line', () => {
    expect(parseDeleteResult({ exitCode: 1, stderr: 'conntrack v1.4.7 (conntrack-tools): Operation failed: Operation not permitted\nmore' })).toEqual({
      ok: false,
      error: 'conntrack v1.4.7 (conntrack-tools): Operation failed: Operation not permitted',
    })
    expect(parseDeleteResult({ exitCode: 2, stderr: '' })).toEqual({ ok: false, error: 'exit code 2' })
    // exit 1 that claims deletions is not the "nothing matched" case
    expect(parseDeleteResult({ exitCode: 1, stderr: '3 flow entries have been deleted.' }).ok).toBe(false)
  })
})

describe('parseConntrackList', () => {
  it('reads captured tcp and udp listings (original dport, reply source)', () => {
    const tcp = parseConntrackList(fixture('list-tcp-dnat.txt'))
    expect(tcp).toHaveLength(9)
    expect(tcp[0]).toEqual({ protocol: 'tcp', origDport: 40000, replySrc: '10.8.0.2', replySport: 8080 })
    expect(parseConntrackList(fixture('list-udp-dnat.txt'))).toEqual([
      { protocol: 'udp', origDport: 40001, replySrc: '10.8.0.2', replySport: 8081 },
      { protocol: 'udp', origDport: 40001, replySrc: '10.8.0.2', replySport: 8081 },
    ])
  })
  it('skips the summary line, other protocols and half lines', () => {
    expect(
      parseConntrackList(
        'conntrack v1.4.7 (conntrack-tools): 9 flow entries have been shown.\nicmp 1 29 src=1.1.1.1 dst=2.2.2.2 type=8 code=0 id=1 src=2.2.2.2 dst=1.1.1.1 type=0 code=0 id=1\ntcp 6 1 SYN_SENT src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2',
      ),
    ).toEqual([])
  })
})

describe('flushConntrack', () => {
  it('runs one conntrack -D per forward and tolerates "0 deleted"', async () => {
    const { exec, calls } = scripted((args) => (args.includes('40002') ? ONE : NONE))
    const r = await flushConntrack(exec, [fwd('tcp', 40002, '10.8.0.2', 8082), fwd('udp', 40003)], PUB)
    expect(r).toEqual({ deleted: 1, processes: 2, skipped: [], errors: [] })
    expect(calls.map((c) => c.file)).toEqual(['conntrack', 'conntrack'])
  })

  it('an empty list runs nothing', async () => {
    const { exec, calls } = scripted(() => NONE)
    expect(await flushConntrack(exec, [], PUB)).toEqual({ deleted: 0, processes: 0, skipped: [], errors: [] })
    expect(calls).toEqual([])
  })

  it('prefixes conntrackArgv (e.g. ip netns exec)', async () => {
    const { exec, calls } = scripted(() => NONE)
    await flushConntrack(exec, [fwd('tcp', 1)], PUB, { conntrackArgv: ['ip', 'netns', 'exec', 'x', 'conntrack'] })
    expect(calls[0]).toEqual({ file: 'ip', args: ['netns', 'exec', 'x', 'conntrack', ...conntrackFlushArgs(fwd('tcp', 1), PUB)] })
  })

  it('reports real failures without rejecting', async () => {
    const { exec } = scripted(() => ({ exitCode: 1, stdout: '', stderr: 'conntrack v1.4.7 (conntrack-tools): Operation failed: Operation not permitted' }))
    const r = await flushConntrack(exec, [fwd('tcp', 1)], PUB)
    expect(r.errors).toEqual([{ forward: fwd('tcp', 1), error: 'conntrack v1.4.7 (conntrack-tools): Operation failed: Operation not permitted' }])
  })

  it('a missing binary stops after the first attempt and skips the rest', async () => {
    const { exec, calls } = scripted(() => new WgpmpError('WGPMP_EXEC_MISSING', 'conntrack: command not found'))
    const r = await flushConntrack(exec, [fwd('tcp', 1), fwd('tcp', 2), fwd('tcp', 3)], PUB, { concurrency: 1 })
    expect(calls).toHaveLength(1)
    expect(r.skipped).toHaveLength(3)
    expect(r.errors).toEqual([{ error: 'conntrack: command not found' }])
  })

  it('runs at most `concurrency` processes at once', async () => {
    let running = 0
    let peak = 0
    const exec: Exec = async () => {
      peak = Math.max(peak, ++running)
      await new Promise((r) => setTimeout(r, 2))
      running--
      return NONE
    }
    const r = await flushConntrack(
      exec,
      Array.from({ length: 20 }, (_, i) => fwd('tcp', 1000 + i)),
      PUB,
      { concurrency: 3 },
    )
    expect(r.processes).toBe(20)
    expect(peak).toBe(3)
  })

  it('a batch of 10,000 lists once per protocol and deletes only forwards with flows, at most maxProcesses', async () => {
    const forwards = Array.from({ length: 10_000 }, (_, i) => fwd(i % 2 ? 'udp' : 'tcp', 10_000 + i, '10.8.0.2', 20_000 + i))
    const listing = (p: Protocol, ports: number[]): string =>
      ports
        .map(
          (e) =>
            `${p} ${p === 'tcp' ? 6 : 17} 100 src=203.0.113.9 dst=${PUB} sport=5555 dport=${e} src=10.8.0.2 dst=203.0.113.9 sport=${e + 10_000} dport=5555 mark=0 use=1`,
        )
        .join('\n')
    const { exec, calls } = scripted((args) => {
      if (args[0] === '-L') {
        return args[2] === 'tcp'
          ? {
              exitCode: 0,
              stdout:
                listing('tcp', [10_000, 10_002, 19_998]) +
                '\n' +
                'tcp 6 100 ESTABLISHED src=203.0.113.9 dst=198.51.100.1 sport=1 dport=10004 src=10.8.0.9 dst=203.0.113.9 sport=30004 dport=1 mark=0 use=1',
              stderr: '',
            }
          : { exitCode: 0, stdout: listing('udp', [10_001]), stderr: '' }
      }
      return ONE
    })
    const r = await flushConntrack(exec, forwards, PUB, { maxProcesses: 3 })
    // tcp/10004's flow goes to another client (10.8.0.9): not this forward's, left alone.
    expect(calls.filter((c) => c.args[0] === '-L')).toHaveLength(2)
    const deletes = calls.filter((c) => c.args[0] === '-D').map((c) => `${c.args[2]}/${c.args[6]}`)
    expect(deletes.sort()).toEqual(['tcp/10000', 'tcp/10002', 'udp/10001'])
    expect(r.skipped.map((f) => f.externalPort)).toEqual([19_998])
    expect(r.processes).toBe(5)
    expect(r.deleted).toBe(3)
  })

  it('big batch: a failed listing skips that protocol and says so', async () => {
    const forwards = Array.from({ length: 5 }, (_, i) => fwd('udp', 100 + i))
    const { exec, calls } = scripted(() => ({ exitCode: 1, stdout: '', stderr: 'conntrack v1.4.7 (conntrack-tools): Operation failed: Invalid argument' }))
    const r = await flushConntrack(exec, forwards, PUB, { maxProcesses: 2 })
    expect(calls).toHaveLength(1)
    expect(r.skipped).toHaveLength(5)
    expect(r.errors[0]?.error).toMatch(/^conntrack -L -p udp: .*Invalid argument/)
  })
})

describe('ConntrackFlows', () => {
  it('ends the flows DNATed from each destination forwards match (the announced address and, behind 1:1 NAT, the local one)', async () => {
    const { exec, calls } = scripted(() => NONE)
    const flows = new ConntrackFlows({ exec, publicAddresses: [PUB, '10.42.42.42'], log: silentLogger() })
    expect(await flows.endLeftovers([fwd('tcp', 20000), fwd('udp', 20001, 'fd00::2')])).toBe(0)
    // the IPv6 forward has no IPv4 flow; the IPv4 one is looked for under both destinations
    expect(calls.map((c) => c.args[c.args.indexOf('--orig-dst') + 1])).toEqual([PUB, '10.42.42.42'])
    expect(calls.every((c) => c.args.includes('20000'))).toBe(true)
  })
})
