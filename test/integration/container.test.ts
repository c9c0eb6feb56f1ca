/**
 * The container beside wg-easy, proven in the lab: the image from the repository's Dockerfile
 * (scripts/container-image.sh: a debootstrapped Debian 13 base imported into podman, no registry)
 * runs with podman in the lab's server namespace, as compose's `network_mode: service:wg-easy`
 * puts it in wg-easy's, with only NET_ADMIN added, a read-only config and a wg-easy v15 wg0.conf
 * for names. A real natpmpc forward carries traffic; `podman stop` removes the table.
 * (wireguard-go's control sockets are files in /var/run/wireguard, so the lab mounts that
 * directory; with wg-easy's kernel WireGuard `wg` talks netlink in the shared namespace.)
 */
import { writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { execa } from 'execa'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isRoot, startLab, waitFor, type Lab } from './lab.js'
import { listen, talk } from './traffic.js'
import { jsonLines, labConfig, natpmpc } from './wgpmp-proc.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const CACHE = `${ROOT}.cache/container`
const PODMAN = [
  '--root',
  `${CACHE}/storage`,
  '--runroot',
  '/tmp/wgpmp-podman-run',
  '--storage-driver',
  'vfs',
  '--cgroup-manager',
  'cgroupfs',
  '--events-backend',
  'file',
  '--runtime',
  'runc',
]
const haveTools = async (): Promise<boolean> => {
  for (const t of ['podman', 'runc', 'debootstrap']) if ((await execa('sh', ['-c', `command -v ${t}`], { reject: false })).exitCode !== 0) return false
  return true
}

describe.runIf(isRoot)("the container image beside wg-easy (podman in the lab's server namespace)", () => {
  let lab: Lab
  let image: string
  let name: string
  let child: Promise<unknown> | undefined
  const lines: Record<string, unknown>[] = []
  const waitLog = (msg: string) => waitFor(() => lines.find((l) => l.msg === msg), { timeoutMs: 30_000, what: `container log ${msg}` })

  beforeAll(async () => {
    if (!(await haveTools())) throw new Error('podman, runc and debootstrap are needed (scripts/install-deps.sh installs them)')
    image = (await execa('bash', [`${ROOT}scripts/container-image.sh`], { cwd: ROOT, timeout: 900_000 })).stdout.trim().split('\n').pop()!
    lab = await startLab()
    name = `wgpmp-ins-${lab.id}`
    await listen(lab, 'c1', 'tcp', lab.ips.c1, 8080, 'c1-web')
    await writeFile(
      `${lab.dir}/container.json`,
      JSON.stringify(labConfig(lab, { port_forward_min_port: 20000, port_forward_max_port: 20100, state_file: '/var/lib/wgpmp/state.json' })),
    )
    // wg-easy's config volume: its v15 wg0.conf names the peer.
    await writeFile(
      `${lab.dir}/${lab.ifaces.srvWg}.conf`,
      `# Server\n[Interface]\nListenPort = ${lab.wgPort}\n\n# Client: container-named c1 (7)\n[Peer]\nPublicKey = ${lab.pubkeys.c1}\nAllowedIPs = ${lab.ips.c1}/32\n\n`,
    )
  }, 900_000)
  afterAll(async () => {
    if (child) {
      await execa('podman', [...PODMAN, 'stop', '-t', '10', name], { reject: false, timeout: 30_000 })
      await execa('podman', [...PODMAN, 'rm', '-f', name], { reject: false, timeout: 30_000 })
    }
    await lab?.down()
  }, 120_000)

  it('runs in the server namespace with NET_ADMIN only, names the peer from wg0.conf, and a forward carries traffic', async () => {
    const proc = execa(
      'podman',
      [
        ...PODMAN,
        'run',
        '--rm',
        '--name',
        name,
        '--network',
        `ns:/run/netns/${lab.ns.srv}`,
        '--cap-drop',
        'all',
        '--cap-add',
        'NET_ADMIN',
        '--ulimit',
        'nofile=1024:1024',
        '--ulimit',
        'nproc=1024:1024',
        '-v',
        `${lab.dir}/container.json:/etc/wgpmp/config.json:ro`,
        '-v',
        `${lab.dir}:/etc/wireguard:ro`,
        '-v',
        '/var/run/wireguard:/var/run/wireguard',
        image,
      ],
      { reject: false, buffer: false, timeout: 300_000 },
    )
    child = proc
    jsonLines<Record<string, unknown>>(
      proc.stdout,
      (l) => lines.push(l),
      (p) => ({ msg: p }),
    )
    let stderr = ''
    proc.stderr?.setEncoding('utf8')
    proc.stderr?.on('data', (c: string) => (stderr += c))
    try {
      await waitLog('NAT-PMP listening')
    } catch (err) {
      throw new Error(`container did not start: ${stderr}\n${JSON.stringify(lines.slice(-5))}`, { cause: err })
    }
    expect(lines.find((l) => l.msg === 'peer added' && l.clientName === 'container-named c1')).toBeDefined()
    // The daemon runs Debian 13's node from the image, not the host's.
    expect((await execa('podman', [...PODMAN, 'exec', name, 'node', '--version'])).stdout).toMatch(/^v20\./)
    const r = await natpmpc(lab, 'c1', ['-a', '20010', '8080', 'tcp', '3600'])
    expect(r.port).toBe(20010)
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20010)).toBe(`c1-web ${lab.ips.inet}`)
    expect((await lab.exec('srv', 'nft', ['list', 'map', 'inet', 'wgpmp', 'forwards_v4'])).stdout).toContain(`tcp . 20010 : ${lab.ips.c1} . 8080`)
  })

  it('podman stop (SIGTERM) removes the forwards and the table', async () => {
    await execa('podman', [...PODMAN, 'stop', '-t', '20', name], { timeout: 60_000 })
    await child
    child = undefined
    expect(lines.find((l) => l.msg === 'forwards removed, table deleted')).toBeDefined()
    expect((await lab.exec('srv', 'nft', ['list', 'tables'])).stdout).not.toContain('wgpmp')
  })
})
