/**
 * The Debian package as an admin gets it: scripts/build-deb.sh builds it, lintian finds no error,
 * `apt-get install ./wgpmp_*.deb` installs it, the units verify, the INSTALLED /usr/bin/wgpmp
 * (with only CAP_NET_ADMIN, as the unit gives it) carries a real forward in the namespace lab, the
 * installed tree also runs on Debian 12's node 18, a reinstall keeps an edited conffile, and
 * `apt-get purge` leaves nothing behind. Changes the machine's package set while it runs (CI is a
 * throwaway machine); afterAll purges the package even when a test fails.
 */
import { existsSync, statSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { execa } from 'execa'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isRoot, startLab, type Lab } from './lab.js'
import { listen, talk } from './traffic.js'
import { labConfig, natpmpc, startWgpmp } from './wgpmp-proc.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const APT = ['-y', '-qq', '-o', 'DPkg::Lock::Timeout=120', '-o', 'Dpkg::Options::=--force-confdef', '-o', 'Dpkg::Options::=--force-confold']
const APT_ENV = { DEBIAN_FRONTEND: 'noninteractive' }
/** Where a wgpmp file could be left after a purge. */
const LOOK_IN = ['/etc', '/usr/bin', '/usr/lib', '/usr/share/doc', '/usr/share/man/man1', '/usr/share/lintian/overrides', '/lib/systemd', '/var/lib']

const installedVersion = async (): Promise<string | null> => {
  const r = await execa('dpkg-query', ['-W', '-f=${Status} ${Version}', 'wgpmp'], { reject: false })
  return r.exitCode === 0 && r.stdout.startsWith('install ok installed') ? r.stdout.split(' ').pop()! : null
}
/** Every path under LOOK_IN whose name contains "wgpmp". */
const leftovers = async (): Promise<string[]> => {
  const r = await execa('find', [...LOOK_IN.filter(existsSync), '-name', '*wgpmp*'], { reject: false })
  return r.stdout.split('\n').filter(Boolean).sort()
}

describe.runIf(isRoot)('the Debian package: build, lintian, install, run, purge', () => {
  let out: string
  let deb: string
  let before: string[]
  let lab: Lab | undefined

  beforeAll(async () => {
    if ((await installedVersion()) !== null) throw new Error('wgpmp is already installed on this machine: not touching it')
    before = await leftovers()
    out = await mkdtemp(join(tmpdir(), 'wgpmp-deb-test-'))
    const r = await execa('bash', [`${ROOT}scripts/build-deb.sh`, out], { cwd: ROOT, timeout: 300_000 })
    deb = r.stdout.trim().split('\n').pop()!
  }, 300_000)
  afterAll(async () => {
    await lab?.down()
    if ((await installedVersion()) !== null) await execa('apt-get', ['purge', ...APT, 'wgpmp'], { env: APT_ENV, reject: false, timeout: 120_000 })
    if (out) await rm(out, { recursive: true, force: true })
  }, 180_000)

  it('is wgpmp_<version>_all.deb with the declared dependencies and a conffile', async () => {
    const version = (JSON.parse(await readFile(`${ROOT}package.json`, 'utf8')) as { version: string }).version
    expect(deb).toBe(join(out, `wgpmp_${version}_all.deb`))
    const f = async (field: string): Promise<string> => (await execa('dpkg-deb', ['-f', deb, field])).stdout
    expect(await f('Architecture')).toBe('all')
    expect(await f('Depends')).toBe('nodejs (>= 18.19), nftables, wireguard-tools')
    expect((await execa('dpkg-deb', ['--ctrl-tarfile', deb]).pipe('tar', ['-xO', './conffiles'])).stdout.trim()).toBe('/etc/wgpmp/config.json')
    // Sane size: the daemon and its production dependencies only (no devDependencies, no Chromium).
    expect(statSync(deb).size).toBeLessThan(5_000_000)
    const files = (await execa('dpkg-deb', ['-c', deb])).stdout
    expect(files).toContain('./usr/lib/wgpmp/dist/src/main.js')
    expect(files).toContain('./usr/lib/wgpmp/nft/wgpmp.nft')
    expect(files).toContain('./usr/lib/wgpmp/node_modules/koffi/')
    expect(files).not.toMatch(/node_modules\/(vitest|typescript|eslint|playwright-core)\//)
  })

  it('lintian reports no error', async () => {
    const r = await execa('lintian', ['--tag-display-limit', '0', deb], { reject: false, timeout: 180_000 })
    const errors = r.stdout.split('\n').filter((l) => /^E: /.test(l))
    expect(errors).toEqual([])
    expect(r.stderr).not.toMatch(/^E: /m)
  }, 180_000)

  it('apt-get installs it; nothing is started; the state directory exists', async () => {
    const r = await execa('apt-get', ['install', ...APT, deb], { env: APT_ENV, all: true, reject: false, timeout: 180_000 })
    expect(r.exitCode, r.all).toBe(0)
    expect(await installedVersion()).not.toBeNull()
    expect((await execa('/usr/bin/wgpmp', ['--version'])).stdout).toMatch(/^wgpmp \d+\.\d+\.\d+/)
    expect(statSync('/var/lib/wgpmp').mode & 0o777).toBe(0o750)
    const config = JSON.parse(await readFile('/etc/wgpmp/config.json', 'utf8')) as Record<string, unknown>
    expect(config.port_forward_enabled).toBe(false)
    expect((await execa('/usr/bin/wgpmp', ['--check'])).stdout).toContain('/etc/wgpmp/config.json: ok')
    // The packaged config is disabled: the daemon says so and exits 0 without touching nftables.
    const run = await execa('/usr/bin/wgpmp', [], { reject: false, timeout: 20_000 })
    expect(run.exitCode).toBe(0)
    expect(run.stdout).toContain('port forwarding is disabled')
  }, 180_000)

  it('systemd-analyze verify finds nothing to say about the installed units', async () => {
    for (const unit of ['/lib/systemd/system/wgpmp.service', '/lib/systemd/system/wgpmp@.service']) {
      const r = await execa('systemd-analyze', ['verify', unit], { all: true, reject: false, timeout: 60_000 })
      expect(r.all, unit).toBe('')
      expect(r.exitCode).toBe(0)
    }
    const unit = await readFile('/lib/systemd/system/wgpmp.service', 'utf8')
    expect(unit).not.toMatch(/^(BindsTo|Requires)=/m)
    expect(unit).toMatch(/^CapabilityBoundingSet=CAP_NET_ADMIN$/m)
  }, 120_000)

  it('the installed /usr/bin/wgpmp, with only CAP_NET_ADMIN, carries a real forward in the lab', async () => {
    lab = await startLab()
    await listen(lab, 'c1', 'tcp', lab.ips.c1, 8080, 'c1-web')
    // As the unit runs it: root with a bounding set of CAP_NET_ADMIN alone (nft, conntrack and wg
    // inherit it), so CAP_NET_RAW and the rest are proven unneeded.
    const wgpmp = await startWgpmp(lab, labConfig(lab, { port_forward_min_port: 20000, port_forward_max_port: 20100 }), 'installed', {
      file: 'setpriv',
      args: ['--bounding-set', '-all,+net_admin', '--inh-caps', '-all', '/usr/bin/wgpmp'],
    })
    const caps = await readFile(`/proc/${wgpmp.pid}/status`, 'utf8')
    expect(/^CapEff:\s+0*1000$/m.test(caps), caps).toBe(true) // bit 12 = CAP_NET_ADMIN only
    expect(await wgpmp.waitLog('forwarding base installed')).toMatchObject({ driver: 'nft', mode: 'library' })
    const r = await natpmpc(lab, 'c1', ['-a', '20010', '8080', 'tcp', '3600'])
    expect(r.port).toBe(20010)
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20010)).toBe(`c1-web ${lab.ips.inet}`)
    expect(await wgpmp.stop('SIGTERM')).toBe(0)
    expect((await lab.exec('srv', 'nft', ['list', 'tables'])).stdout).not.toContain('wgpmp')
  })

  it("the installed tree runs on Debian 12's node 18 too (a UDP forward)", async () => {
    const node18 = (await execa('bash', [`${ROOT}scripts/node18.sh`], { cwd: ROOT, timeout: 300_000 })).stdout.trim().split('\n').pop()!
    await listen(lab!, 'c1', 'udp', lab!.ips.c1, 9001, 'c1-udp')
    const wgpmp = await startWgpmp(lab!, labConfig(lab!, { port_forward_min_port: 20000, port_forward_max_port: 20100 }), 'installed18', {
      file: node18,
      args: ['/usr/lib/wgpmp/dist/src/main.js'],
    })
    const r = await natpmpc(lab!, 'c1', ['-a', '20011', '9001', 'udp', '3600'])
    expect(r.port).toBe(20011)
    expect(await talk(lab!, 'inet', 'udp', lab!.ips.public, 20011)).toBe(`c1-udp ${lab!.ips.inet}`)
    expect(await wgpmp.stop('SIGTERM')).toBe(0)
    await lab!.down()
  }, 300_000)

  it('a reinstall (upgrade path) keeps an edited conffile and starts nothing', async () => {
    const edited = { ...(JSON.parse(await readFile('/etc/wgpmp/config.json', 'utf8')) as object), wg_interface: 'wgtest9' }
    await writeFile('/etc/wgpmp/config.json', JSON.stringify(edited, null, 2) + '\n')
    const r = await execa('apt-get', ['install', '--reinstall', ...APT, deb], { env: APT_ENV, all: true, reject: false, timeout: 180_000 })
    expect(r.exitCode, r.all).toBe(0)
    expect(JSON.parse(await readFile('/etc/wgpmp/config.json', 'utf8'))).toMatchObject({ wg_interface: 'wgtest9' })
    expect(existsSync('/var/lib/wgpmp')).toBe(true)
  }, 180_000)

  it('apt-get purge leaves nothing behind', async () => {
    await writeFile('/var/lib/wgpmp/state.json', '{}\n') // what a run leaves: purge must remove it
    const r = await execa('apt-get', ['purge', ...APT, 'wgpmp'], { env: APT_ENV, all: true, reject: false, timeout: 120_000 })
    expect(r.exitCode, r.all).toBe(0)
    expect(await installedVersion()).toBeNull()
    expect((await execa('dpkg-query', ['-W', '-f=${Status}', 'wgpmp'], { reject: false })).stdout).not.toMatch(/config-files|installed/)
    for (const p of ['/usr/lib/wgpmp', '/usr/bin/wgpmp', '/etc/wgpmp', '/var/lib/wgpmp', '/lib/systemd/system/wgpmp.service'])
      expect(existsSync(p), p).toBe(false)
    expect(await leftovers()).toEqual(before)
  }, 180_000)
})
