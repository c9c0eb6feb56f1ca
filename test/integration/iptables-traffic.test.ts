/** IptablesDriver with real packets: outside -> public:ext is DNATed to the WireGuard side and answered; NAT-PMP only via wg0. */
import { afterAll, describe, expect, it } from 'vitest'
import { IptablesDriver } from '../../src/drivers/iptables.js'
import { NATPMP_PORT } from '../../src/protocol/constants.js'
import { fwd } from '../drivers/conformance.js'
import { createNetns, removeAllNetns, type Netns } from './netns.js'

async function ok(ns: Netns, file: string, args: readonly string[]): Promise<string> {
  const r = await ns.exec(file, args)
  if (r.exitCode !== 0) throw new Error(`${ns.name}: ${file} ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

/** Serves one UDP datagram on port and echoes it back with a prefix; prints what it got. */
const ECHO = (port: number, secs: number): string[] => [
  '-c',
  `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', ${port})); s.settimeout(${secs})
try:
    d, a = s.recvfrom(100); s.sendto(b'echo:' + d, a); print(d.decode())
except socket.timeout:
    pass
`,
]
/** Collects datagrams on port for secs seconds and prints them, one a line. */
const COLLECT = (port: number, secs: number): string[] => [
  '-c',
  `
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', ${port})); end = time.time() + ${secs}
while time.time() < end:
    s.settimeout(max(0.01, end - time.time()))
    try: print(s.recvfrom(100)[0].decode(), flush=True)
    except socket.timeout: pass
`,
]
/** Sends msg to host:port a few times until a reply arrives; prints the reply and its source. */
const ASK = (host: string, port: number, msg: string): string[] => [
  '-c',
  `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.3)
for _ in range(10):
    s.sendto(b'${msg}', ('${host}', ${port}))
    try:
        d, a = s.recvfrom(100); print(d.decode(), a[0], a[1]); break
    except socket.timeout: pass
`,
]
/** Sends msg to host:port n times (no reply expected). */
const SEND = (host: string, port: number, msg: string): string[] => [
  '-c',
  `
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(5): s.sendto(b'${msg}', ('${host}', ${port})); time.sleep(0.1)
`,
]

describe.runIf(process.getuid?.() === 0)('iptables driver with real traffic (netns)', () => {
  afterAll(removeAllNetns)

  it('forwards udp to the client and back with FORWARD policy DROP, and guards NAT-PMP', async () => {
    // router: wg0 10.8.0.1/24 <-> client eth0 10.8.0.2; up0 203.0.113.7/24 <-> outside eth0 203.0.113.50
    const router = await createNetns()
    const client = await createNetns()
    const outside = await createNetns()
    try {
      await ok(router, 'ip', ['link', 'add', 'wg0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', client.name])
      await ok(router, 'ip', ['link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', outside.name])
      for (const [ns, dev, addr] of [
        [router, 'wg0', '10.8.0.1/24'],
        [router, 'up0', '203.0.113.7/24'],
        [client, 'eth0', '10.8.0.2/24'],
        [outside, 'eth0', '203.0.113.50/24'],
      ] as const) {
        await ok(ns, 'ip', ['addr', 'add', addr, 'dev', dev])
        await ok(ns, 'ip', ['link', 'set', dev, 'up'])
        await ok(ns, 'ip', ['link', 'set', 'lo', 'up'])
      }
      await ok(client, 'ip', ['route', 'add', 'default', 'via', '10.8.0.1'])
      await ok(router, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1'])
      await ok(router, 'iptables', ['-P', 'FORWARD', 'DROP']) // only wgpmp's ACCEPT lets anything through

      const d = new IptablesDriver({ exec: router.exec })
      await d.ensureBase({ publicV4: ['203.0.113.7'], wgInterfaces: ['wg0'] })
      await d.apply([{ op: 'add', forward: fwd('udp', 40000, '10.8.0.2', 5000) }])

      const server = client.exec('python3', ECHO(5000, 6))
      const reply = await ok(outside, 'python3', ASK('203.0.113.7', 40000, 'hello'))
      expect(reply.trim()).toBe('echo:hello 203.0.113.7 40000') // reply un-DNATed on the way back
      expect((await server).stdout.trim()).toBe('hello')

      await d.apply([{ op: 'delete', forward: fwd('udp', 40000, '10.8.0.2', 5000) }])
      const server2 = client.exec('python3', ECHO(5000, 3))
      expect((await ok(outside, 'python3', ASK('203.0.113.7', 40000, 'again'))).trim()).toBe('')
      expect((await server2).stdout.trim()).toBe('')

      const pmp = router.exec('python3', COLLECT(NATPMP_PORT, 2.5))
      await new Promise((r) => setTimeout(r, 300))
      await ok(client, 'python3', SEND('10.8.0.1', NATPMP_PORT, 'from-wg'))
      await ok(outside, 'python3', SEND('203.0.113.7', NATPMP_PORT, 'from-outside'))
      const got = new Set((await pmp).stdout.split('\n').filter(Boolean))
      expect([...got]).toEqual(['from-wg'])
    } finally {
      await Promise.allSettled([router.remove(), client.remove(), outside.remove()])
    }
  })
})
