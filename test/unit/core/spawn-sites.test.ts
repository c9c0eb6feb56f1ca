/** One way to run a process: only src/core/exec.ts may import node:child_process or execa. */
import { readdir, readFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const SRC = fileURLToPath(new URL('../../../src', import.meta.url))
const ALLOWED = new Set(['core/exec.ts'])
/** An import or dynamic import of a module that starts processes. */
const STARTS_PROCESSES = /(?:from\s+|import\s*\(\s*)['"](?:node:)?(?:child_process|execa)['"]/

async function tsFiles(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) out.push(...(await tsFiles(p)))
    else if (e.name.endsWith('.ts')) out.push(p)
  }
  return out
}

describe('process start sites', () => {
  it('the pattern sees every import form it must forbid', () => {
    for (const line of [
      `import { spawn } from 'node:child_process'`,
      `import { execa } from "execa"`,
      `import cp from 'child_process'`,
      `await import('node:child_process')`,
    ]) {
      expect(STARTS_PROCESSES.test(line), line).toBe(true)
    }
    expect(STARTS_PROCESSES.test(`import { systemExec } from '../core/exec.js'`)).toBe(false)
  })

  it('only src/core/exec.ts imports node:child_process or execa', async () => {
    const files = await tsFiles(SRC)
    expect(files.length).toBeGreaterThan(20)
    const offenders: string[] = []
    for (const f of files) {
      const rel = relative(SRC, f).split('\\').join('/')
      if (!ALLOWED.has(rel) && STARTS_PROCESSES.test(await readFile(f, 'utf8'))) offenders.push(rel)
    }
    expect(offenders).toEqual([])
    expect(STARTS_PROCESSES.test(await readFile(join(SRC, 'core/exec.ts'), 'utf8'))).toBe(true)
  })
})
