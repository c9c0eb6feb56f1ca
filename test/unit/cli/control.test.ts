import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { flushForwards, formatRows, listForwards } from '../../../src/cli/control.js'
import { parseConfig } from '../../../src/config/load.js'
import { startApi, type ApiServer } from '../../../src/http/api.js'
import { silentLogger } from '../../../src/log.js'
import { fakeDeps, type Fake } from '../../helpers/fake-api-deps.js'

const T0 = Date.UTC(2026, 10, 26, 12)
let dir: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wgpmp-cli-'))
})
afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('wgpmp forwards / flush', () => {
  it('without the API, lists the live leases and stored static forwards from the state file', async () => {
    const state = join(dir, 'state.json')
    const lease = (externalPort: number, expiresAtUnixMs: number) => ({
      client: '10.8.0.2',
      protocol: 'tcp',
      internalPort: 8080,
      externalPort,
      targetPort: 8080,
      lifetimeSeconds: 3600,
      expiresAtUnixMs,
      createdAtUnixMs: T0 - 1000,
    })
    await writeFile(
      state,
      JSON.stringify({
        version: 1,
        epochStartedAtUnixMs: T0 - 10_000,
        leases: [lease(40000, T0 + 3_599_000), lease(40001, T0 - 1)],
        static_forwards: [
          {
            id: 'udp-27015-27030',
            client: 'oLCGdaDSDw-O',
            protocol: 'udp',
            external_port: '27015-27030',
            internal_port: '27015-27030',
            created_at: '2026-01-01T00:00:00.000Z',
          },
        ],
      }),
    )
    const out = await listForwards(parseConfig({ state_file: state }), T0)
    expect(out.split('\n').slice(1)).toEqual([
      'CLIENT        PROTO  PUBLIC        TARGET         ORIGIN   LEFT',
      '10.8.0.2      tcp    :40000        10.8.0.2:8080  nat-pmp  59m59s',
      'oLCGdaDSDw-O  udp    :27015-27030  ?:27015-27030  static   static',
      '',
    ])
  })
  it('flush needs the API and says how to do without it', async () => {
    await expect(flushForwards(parseConfig({ state_file: join(dir, 's.json') }))).rejects.toThrow(/api_token_file/)
  })

  describe('through the API', () => {
    let fake: Fake
    let api: ApiServer
    beforeEach(async () => {
      fake = await fakeDeps()
      api = await startApi({ listen: { host: '127.0.0.1', port: 0 }, token: 'cli-token-0123456789abcdef', deps: fake.deps, log: silentLogger() })
      await writeFile(join(dir, 'token'), 'cli-token-0123456789abcdef\n', { mode: 0o600 })
    })
    afterEach(async () => {
      await api.close()
      await fake.cleanup()
    })
    const config = () => parseConfig({ api_token_file: join(dir, 'token'), api_listen: `127.0.0.1:${api.address.port}`, state_file: join(dir, 's.json') })

    it('lists every forward, then flushes the leases', async () => {
      const before = await listForwards(config())
      expect(before.split('\n').filter((l) => / (nat-pmp|pcp|static) /.test(l))).toHaveLength(3)
      expect(await flushForwards(config())).toBe('flushed 2 lease(s); static forwards stay\n')
      const after = await listForwards(config())
      expect(after.split('\n').filter((l) => / (nat-pmp|pcp|static) /.test(l))).toHaveLength(1)
    })
    it('says so when the daemon does not answer', async () => {
      await api.close()
      await expect(listForwards(config())).rejects.toThrow(/cannot reach the daemon's API/)
    })
  })

  it('formats an aligned table', () => {
    expect(formatRows([{ protocol: 'tcp', external: '198.51.100.1:1', target: 'a:2', origin: 'static', left: 'static', client: 'x' }])).toBe(
      'CLIENT  PROTO  PUBLIC          TARGET  ORIGIN  LEFT\nx       tcp    198.51.100.1:1  a:2     static  static\n',
    )
  })
})
