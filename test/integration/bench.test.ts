/**
 * Keeps the benchmark harness working (issue 3: CI runs `npm run bench -- --quick`). It asserts
 * what the harness measures, never how fast: every reply came after its rule was committed, every
 * sampled forward was in the kernel and carried a real TCP connection, and the report is complete.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { execa } from 'execa'
import { afterAll, describe, expect, it } from 'vitest'
import { isRoot } from './lab.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

interface Verify {
  kernelListed: number
  tcpArrived: number
  tcpRightClient: number
  checked: number
  goneAfterDelete: number
}
interface LevelResult {
  n: number
  failures: number
  ruleCommittedBeforeReply: { yes: number; no: number }
  samples: number
  verify: Verify
  rule: { n: number }
}

describe.runIf(isRoot)('bench --quick (the harness, not the figures)', () => {
  const out = mkdtempSync(join(tmpdir(), 'wgpmp-bench-test-'))
  afterAll(() => rmSync(out, { recursive: true, force: true }))

  it('runs the nft and iptables drivers end to end and writes a complete report', async () => {
    const r = await execa('node', ['--import', 'tsx', 'bench/run.ts', '--quick', '--drivers=nft,iptables', '--no-memory', `--out=${out}`], {
      cwd: ROOT,
      reject: false,
      timeout: 240_000,
      all: true,
    })
    expect(r.exitCode, r.all).toBe(0)
    const json = readdirSync(out).find((f) => f.endsWith('.json'))
    expect(json).toBeDefined()
    expect(readdirSync(out).some((f) => f.endsWith('.svg'))).toBe(true)
    const report = JSON.parse(readFileSync(join(out, json!), 'utf8')) as { drivers: Record<string, { levels: LevelResult[] }>; targets: unknown[] }
    for (const key of ['nft', 'iptables']) {
      const levels = report.drivers[key]?.levels ?? []
      expect(
        levels.map((l) => l.n),
        key,
      ).toEqual([0, 1000])
      for (const l of levels) {
        expect(l.rule.n, `${key} N=${l.n}`).toBeGreaterThan(0)
        expect(l.failures, `${key} N=${l.n}`).toBe(0)
        expect(l.ruleCommittedBeforeReply, `${key} N=${l.n}: every reply after its rule`).toEqual({ yes: l.rule.n, no: 0 })
        expect(l.verify.checked, `${key} N=${l.n}`).toBeGreaterThan(0)
        expect(l.verify.tcpRightClient, `${key} N=${l.n}`).toBe(l.verify.checked)
        expect(l.verify.kernelListed, `${key} N=${l.n}`).toBe(l.verify.checked)
        expect(l.verify.tcpArrived, `${key} N=${l.n}`).toBe(l.verify.checked)
        expect(l.verify.goneAfterDelete, `${key} N=${l.n}`).toBe(l.verify.checked)
      }
    }
    expect(report.targets.length).toBeGreaterThanOrEqual(6)
  })
})
