/** Issue 10 §6: --check refuses every config the daemon would refuse or ignore at start, naming the key. */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { checkConfig, type CheckDeps } from '../../../src/cli/check.js'
import { parseConfig } from '../../../src/config/load.js'
import type { ConfigInput } from '../../../src/config/schema.js'
import { clientId } from '../../../src/wireguard/peers.js'

const KEY_A = 'qbg3cFnfc+/v1QzjyW72aQZxJfy5uxk4H5H1KJtz3RQ='
const KEY_B = 'hBiRc5/bSoYVl6AsunOuN7+lQDjplQDETqv/Pb8ns0Q='
const KEY_GONE = '2xJf0YkQ2g6jWkV7Qe4rj3Xq1oYcF5uVd0sR8nT4m1E='
const dir = mkdtempSync(join(tmpdir(), 'wgpmp-check-'))

const deps = (over: Partial<CheckDeps> = {}): CheckDeps => ({
  interfaceExists: (n) => n === 'wg0' || n === 'eth0',
  wgListenPort: () => Promise.resolve(51820),
  peerKeys: () => Promise.resolve([KEY_A, KEY_B]),
  ...over,
})
const cfg = (over: ConfigInput = {}) => parseConfig({ port_forward_enabled: true, state_file: join(dir, 'state.json'), ...over })
const check = (over: ConfigInput = {}, d: Partial<CheckDeps> = {}) => checkConfig(cfg(over), deps(d))
const parseError = (over: ConfigInput): string => {
  try {
    cfg(over)
  } catch (e) {
    return (e as Error).message
  }
  throw new Error('expected a config error')
}

describe('--check: static forwards', () => {
  it('a good config passes with nothing to say', async () => {
    expect(await check({ static_forwards: { [KEY_A]: ['8080:80/tcp'], [clientId(KEY_B)]: ['27015-27030/udp'] } })).toEqual({ errors: [], warnings: [] })
  })
  it('refuses a forward that does not parse, naming it', async () => {
    const r = await check({ static_forwards: { [KEY_A]: ['80:80:80'] } })
    expect(r.errors).toEqual([expect.stringMatching(/^static_forwards\.qbg3.*\[0\]: .*expected EXT/)])
  })
  it('refuses a port out of 1-65535', async () => {
    const r = await check({ static_forwards: { [KEY_A]: ['70000/tcp'] } })
    expect(r.errors.join()).toMatch(/static_forwards\..*\[0\]: external_port: ports must be 1\.\.65535/)
  })
  it('refuses a forward that takes the WireGuard listen port', async () => {
    const r = await check({ static_forwards: { [KEY_A]: ['51800-51830/udp'] } })
    expect(r.errors).toEqual([expect.stringMatching(/^static_forwards\..*: 51800-51830\/udp takes the WireGuard listen port 51820/)])
  })
  it("refuses a forward that collides with another client's", async () => {
    const r = await check({ static_forwards: { [KEY_A]: ['8080/tcp'], [KEY_B]: ['8000-8100/both'] } })
    expect(r.errors).toEqual([expect.stringMatching(/^static_forwards\.hBiR.*: 8000-8100\/both collides with 8080\/tcp of another client/)])
  })
  it('warns about a forward keyed to no known peer', async () => {
    const r = await check({ static_forwards: { [KEY_GONE]: ['8080/tcp'] } })
    expect(r.errors).toEqual([])
    expect(r.warnings).toEqual([expect.stringMatching(/^static_forwards\.2xJf.*: no peer of wg0 has this key or id/)])
  })
})

describe('--check: files and interfaces', () => {
  it('refuses a missing token file and a too-short one, naming api_token_file', async () => {
    expect((await check({ api_token_file: join(dir, 'nope') })).errors).toEqual([expect.stringMatching(/^api_token_file .*nope: cannot read/)])
    const short = join(dir, 'short')
    writeFileSync(short, 'abc\n', { mode: 0o600 })
    expect((await check({ api_token_file: short })).errors).toEqual([expect.stringMatching(/^api_token_file .*: the token must be at least 16 characters/)])
  })
  it('refuses a wg_interface that does not exist', async () => {
    expect((await check({ wg_interface: 'wg9' })).errors).toEqual(['wg_interface: there is no interface named wg9'])
  })
  it('refuses a state_file that is a FIFO', async () => {
    const fifo = join(dir, 'fifo')
    execFileSync('mkfifo', [fifo])
    expect((await check({ state_file: fifo })).errors).toEqual([expect.stringMatching(/^state_file: .*fifo is a FIFO/)])
  })
})

describe('config (daemon and --check alike): values the schema let through', () => {
  it.each(['0.0.0.0', '127.0.0.1', '224.0.0.5', '239.255.255.250', '255.255.255.255'])('public_address_v4 %s is refused, naming the key', (a) => {
    expect(parseError({ public_address_v4: a })).toMatch(new RegExp(`public_address_v4: ${a.replace(/\./g, '\\.')} is (the|a)`))
  })
  it('a usable public_address_v4 passes', () => {
    expect(cfg({ public_address_v4: '198.51.100.1' }).public_address_v4).toBe('198.51.100.1')
  })
  it('an api_listen that does not parse is refused with the key, not a TypeError', () => {
    expect(parseError({ api_listen: '127.0.0.1:99999' })).toMatch(/api_listen: "127\.0\.0\.1:99999" is not "host:port"/)
    expect(parseError({ api_listen: '999.1.1.1:5352' })).toMatch(/api_listen: 999\.1\.1\.1 is not an IPv4 address/)
  })
})

describe('--check: a disabled daemon', () => {
  it('checks nothing on the host (the daemon will touch nothing) and says why', async () => {
    const r = await checkConfig(parseConfig({ port_forward_enabled: false, wg_interface: 'wg9' }), deps({ interfaceExists: () => false }))
    expect(r.errors).toEqual([])
    expect(r.warnings.join(' ')).toContain('port_forward_enabled is false')
    // enabled, the same host is refused
    expect(
      (await checkConfig(parseConfig({ port_forward_enabled: true, wg_interface: 'wg9' }), deps({ interfaceExists: () => false }))).errors.join(' '),
    ).toContain('wg_interface')
  })
})
