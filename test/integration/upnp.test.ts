/**
 * UPnP IGD end to end through real WireGuard (wireguard-go): Debian 12's upnpc (miniupnpc 2.2.4)
 * discovers the gateway by SSDP through the tunnel, maps TCP and UDP ports that carry real traffic
 * from the internet namespace, lists and deletes them; upnpc -u works without discovery; another
 * client's address is refused; python3-libtorrent with UPnP on (NAT-PMP off) maps its listen port;
 * the public side gets no SSDP answer and cannot reach the HTTP server.
 *
 * The lab's clients route like wg-quick with AllowedIPs 0.0.0.0/0 (a full tunnel): the main table's
 * default route is the WireGuard interface, so a search to 239.255.255.250 leaves through it; the
 * server's peer entry accepts it (the source is the client's address). The public address is
 * TEST-NET-2, so upnpc is run with -i ("use a not connected IGD too", docs/upnp.md lab note).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { isRoot, startLab, waitFor, type Lab } from './lab.js'
import { listen, talk } from './traffic.js'
import { labConfig, startWgpmp, type Wgpmp } from './wgpmp-proc.js'

const PYTHON = '/usr/bin/python3'
const hasUpnpc = existsSync('/usr/bin/upnpc')

/** Sends one M-SEARCH from namespace `ns` to dst:1900 (optionally out of a given local address) and prints every reply; '' if none in 2 s. */
const SEARCH_PY = `
import socket, sys
dst, bind = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if bind: s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(bind)); s.bind((bind, 0))
s.settimeout(2.0)
s.sendto(b'M-SEARCH * HTTP/1.1\\r\\nHOST: 239.255.255.250:1900\\r\\nST: ssdp:all\\r\\nMAN: "ssdp:discover"\\r\\nMX: 1\\r\\n\\r\\n', (dst, 1900))
out = []
try:
    while len(out) < 20:
        data, src = s.recvfrom(2048)
        out.append(src[0] + ' ' + data.decode('latin1').split('\\r\\n')[0])
except socket.timeout:
    pass
print('\\n'.join(out))
`

/** libtorrent_client.py (libtorrent.test.ts's client) with --upnp: UPnP on, NAT-PMP off; JSON events on stdout. */
const LT_CLIENT = fileURLToPath(new URL('./libtorrent_client.py', import.meta.url))

describe.runIf(isRoot && hasUpnpc)('UPnP IGD end to end (upnpc, libtorrent, WireGuard)', () => {
  let lab: Lab
  let wgpmp: Wgpmp
  let url: string
  const nftList = async (): Promise<string> => (await lab.exec('srv', 'nft', ['list', 'map', 'inet', 'wgpmp', 'forwards_v4'], { reject: false })).stdout
  const upnpc = async (ns: 'c1' | 'c2', args: readonly string[]): Promise<string> => {
    const r = await lab.exec(ns, 'upnpc', ['-i', ...args], { reject: false, timeout: 20_000 })
    return `${r.stdout}\n${r.stderr}`
  }

  beforeAll(async () => {
    lab = await startLab()
    // The default port range (1024-65535): libtorrent asks for its listen port 6881, then for random
    // ports 40000-49999 on 718, so a narrow range would refuse it every time (it speaks only IGDv1).
    wgpmp = await startWgpmp(lab, labConfig(lab, { metrics_listen: '127.0.0.1:9352' }))
    const up = await wgpmp.waitLog('UPnP listening')
    url = String(up.location)
    await listen(lab, 'c1', 'tcp', lab.ips.c1, 8080, 'c1-web')
    await listen(lab, 'c1', 'udp', lab.ips.c1, 9001, 'c1-udp')
  }, 180_000)
  afterAll(async () => {
    await wgpmp?.stop()
    await lab?.down()
  })

  it('serves on the WireGuard address, port 2869, and the input chain admits 1900 and 2869 only from the tunnel', async () => {
    expect(url).toBe(`http://${lab.ips.wgSrv}:2869/rootDesc.xml`)
    const input = (await lab.exec('srv', 'nft', ['list', 'chain', 'inet', 'wgpmp', 'input'])).stdout
    expect(input).toContain('@wg_only')
    expect((await lab.exec('srv', 'nft', ['list', 'set', 'inet', 'wgpmp', 'wg_only'])).stdout).toMatch(/udp \. 1900, tcp \. 2869|tcp \. 2869, udp \. 1900/)
  })

  it('upnpc discovers the gateway by SSDP through the tunnel (multicast M-SEARCH, unicast reply)', async () => {
    const out = await upnpc('c1', ['-s'])
    expect(out).toContain(`${lab.ips.wgSrv}:2869/ctl/IPConn`)
    expect(out).toContain(`ExternalIPAddress = ${lab.ips.public}`)
    expect(out).toContain('Connection Type : IP_Routed')
  })

  it('a TCP and a UDP mapping carry real traffic from the internet, are listed, then deleted', async () => {
    expect(await upnpc('c1', ['-e', 'web & co', '-a', lab.ips.c1, '8080', '20080', 'TCP', '3600'])).toMatch(
      /external 198\.51\.100\.1:20080 TCP is redirected to internal 10\.8\.0\.2:8080/,
    )
    expect(await upnpc('c1', ['-a', lab.ips.c1, '9001', '20081', 'UDP', '0'])).toMatch(
      /external 198\.51\.100\.1:20081 UDP is redirected to internal 10\.8\.0\.2:9001/,
    )
    const nft = await nftList()
    expect(nft).toContain(`tcp . 20080 : ${lab.ips.c1} . 8080`)
    expect(nft).toContain(`udp . 20081 : ${lab.ips.c1} . 9001`)
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20080)).toBe(`c1-web ${lab.ips.inet}`)
    expect(await talk(lab, 'inet', 'udp', lab.ips.public, 20081)).toBe(`c1-udp ${lab.ips.inet}`)
    const list = await upnpc('c1', ['-l'])
    // miniupnpc 2.2.4 neither escapes what it sends nor unescapes what it reads: it shows 'web &amp; co'
    expect(list).toMatch(/TCP 20080->10\.8\.0\.2:8080\s+'web (&|&amp;) co'/)
    expect(list).toMatch(/UDP 20081->10\.8\.0\.2:9001/)
    // c2 sees none of c1's mappings
    expect(await upnpc('c2', ['-u', url, '-l'])).not.toMatch(/20080|20081/)
    // the state file and the log say upnp
    await waitFor(() => wgpmp.lines.find((l) => l.msg === 'upnp: mapping added' && l.externalPort === 20080), { what: 'mapping log' })
    expect(await upnpc('c1', ['-d', '20080', 'TCP'])).not.toMatch(/failed/i)
    expect(await upnpc('c1', ['-d', '20081', 'UDP'])).not.toMatch(/failed/i)
    expect(await nftList()).not.toMatch(/2008[01]/)
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20080)).toBe('')
  })

  it("upnpc -u works without discovery; a mapping to another client's address is refused (718) and nothing is installed", async () => {
    expect(await upnpc('c2', ['-u', url, '-s'])).toContain(`ExternalIPAddress = ${lab.ips.public}`)
    const out = await upnpc('c2', ['-u', url, '-a', lab.ips.c1, '22', '20090', 'TCP'])
    expect(out).toMatch(/718|ConflictInMappingEntry/)
    expect(await nftList()).not.toContain('20090')
    // c2 cannot take a port c1 holds, and cannot delete it
    await upnpc('c1', ['-a', lab.ips.c1, '8080', '20091', 'TCP'])
    expect(await upnpc('c2', ['-u', url, '-a', lab.ips.c2, '8080', '20091', 'TCP'])).toMatch(/718|ConflictInMappingEntry/)
    expect(await upnpc('c2', ['-u', url, '-d', '20091', 'TCP'])).toMatch(/714|NoSuchEntryInArray/)
    expect(await nftList()).toContain(`tcp . 20091 : ${lab.ips.c1} . 8080`)
    await upnpc('c1', ['-d', '20091', 'TCP'])
  })

  it('/metrics counts UPnP control requests by action and result, and SSDP searches by outcome', async () => {
    const metric = async (): Promise<string> => (await lab.exec('srv', 'curl', ['-s', '-m', '3', 'http://127.0.0.1:9352/metrics'])).stdout
    const value = (text: string, series: string): number => Number(new RegExp(`^${series.replace(/[{}"]/g, '\\$&')} (\\d+)$`, 'm').exec(text)?.[1] ?? 0)
    const before = await metric()
    // one success, one conflict (c2 asks for the port c1 holds), one unknown action, one search
    await upnpc('c1', ['-a', lab.ips.c1, '8080', '20095', 'TCP'])
    await upnpc('c2', ['-u', url, '-a', lab.ips.c2, '8080', '20095', 'TCP'])
    await lab.exec(
      'c1',
      'curl',
      [
        ...['-s', '-m', '3', '-o', '/dev/null', '-X', 'POST', '-H', 'Content-Type: text/xml'],
        ...['-H', 'SOAPAction: "urn:schemas-upnp-org:service:WANIPConnection:1#Frobnicate"'],
        '--data',
        '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><u:Frobnicate xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1"/></s:Body></s:Envelope>',
        url.replace('rootDesc.xml', 'ctl/IPConn'),
      ],
      { reject: false },
    )
    await upnpc('c1', ['-d', '20095', 'TCP'])
    const after = await metric()
    const delta = (series: string): number => value(after, series) - value(before, series)
    expect(delta('wgpmp_upnp_requests_total{action="AddPortMapping",result="ok"}')).toBe(1)
    expect(delta('wgpmp_upnp_requests_total{action="AddPortMapping",result="718"}')).toBe(1)
    expect(delta('wgpmp_upnp_requests_total{action="DeletePortMapping",result="ok"}')).toBe(1)
    expect(delta('wgpmp_upnp_requests_total{action="other",result="401"}')).toBe(1) // the client's action name is not a label
    expect(after).not.toContain('Frobnicate')
    expect(delta('wgpmp_ssdp_searches_total{outcome="answered"}')).toBeGreaterThan(0) // upnpc's discovery from c1
  })

  it('the public side gets no SSDP answer and cannot reach the HTTP server (unicast, multicast, and routed to the tunnel address)', async () => {
    // Let the internet host route to the tunnel prefix through the server (inside the lab only):
    // packets to 10.8.0.1 then arrive on the server's eth0, where the input chain must drop them.
    await lab.exec('inet', 'ip', ['route', 'replace', '10.8.0.0/24', 'via', lab.ips.public])
    const search = async (dst: string, bind = ''): Promise<string> =>
      (await lab.exec('inet', PYTHON, ['-c', SEARCH_PY, dst, bind], { reject: false, timeout: 15_000 })).stdout.trim()
    expect(await search(lab.ips.public)).toBe('')
    expect(await search(lab.ips.wgSrv)).toBe('')
    expect(await search('239.255.255.250', lab.ips.inet)).toBe('')
    // Without the input chain's drop the server would accept this connection and answer 403 (not a
    // client): '000' (no connection at all) shows the packet was dropped on eth0.
    const http = await lab.exec('inet', 'curl', ['-s', '-m', '3', '-o', '/dev/null', '-w', '%{http_code}', url], { reject: false })
    expect(http.stdout).toBe('000')
    const httpPublic = await lab.exec(
      'inet',
      'curl',
      ['-s', '-m', '3', '-o', '/dev/null', '-w', '%{http_code}', `http://${lab.ips.public}:2869/rootDesc.xml`],
      { reject: false },
    )
    expect(httpPublic.stdout).toBe('000')
    // and the same search from a client is answered, from the tunnel address
    expect(await lab.exec('c1', PYTHON, ['-c', SEARCH_PY, '239.255.255.250', ''], { reject: false, timeout: 15_000 }).then((r) => r.stdout)).toContain(
      `${lab.ips.wgSrv} HTTP/1.1 200 OK`,
    )
  })

  it.runIf(existsSync(PYTHON))(
    'libtorrent with UPnP on and NAT-PMP off maps its listen port through the tunnel, and is reachable',
    async () => {
      /** One libtorrent instance until its TCP mapping; how it ended if it ended first. */
      const attempt = async (): Promise<{ port: number; stop: () => void } | { ended: string; report: string }> => {
        const child = lab.spawn('c1', PYTHON, [LT_CLIENT, '--upnp', '--listen', `${lab.ips.c1}:6881`, '--map-timeout', '35', '--linger', '45'], {
          reject: false,
          buffer: false,
        })
        let out = ''
        let err = ''
        let ended = ''
        child.stdout?.setEncoding('utf8')
        child.stdout?.on('data', (c: string) => (out += c))
        child.stderr?.setEncoding('utf8')
        child.stderr?.on('data', (c: string) => (err += c))
        void child.then((r) => (ended = r.signal ? `signal ${r.signal}` : `exit code ${r.exitCode}`))
        const report = (): string => {
          const upnp = wgpmp.lines.filter((l) => String(l.component) === 'upnp' || String(l.component) === 'ssdp').slice(-20)
          return `libtorrent said:\n${out.slice(-6000)}\nstderr:\n${err.slice(-2000)}\nwgpmp said:\n${JSON.stringify(upnp)}`
        }
        try {
          const port = await waitFor(
            () => {
              const m = /"external_port": (\d+), "mapping": \d+, "protocol": "tcp"/.exec(out)
              if (m && Number(m[1]) > 0) return Number(m[1])
              if (ended) return 0
              return undefined
            },
            { timeoutMs: 40_000, what: 'libtorrent UPnP mapping' },
          )
          if (port === 0) return { ended, report: report() }
          return { port, stop: () => child.kill('SIGTERM') }
        } catch (e) {
          child.kill('SIGTERM')
          throw new Error(`${String(e)}\n${report()}`)
        }
      }
      // Debian's libtorrent 2.0.8 has died of a signal at start (libtorrent.test.ts saw it once in
      // CI; here one CI run got no output at all from it): a death by signal before it mapped gets
      // its crash printed and one fresh instance. Any other end, or a timeout, fails at once.
      let got = await attempt()
      if ('ended' in got && got.ended.startsWith('signal')) {
        console.warn(`libtorrent died (${got.ended}) before mapping; one more instance.\n${got.report}`)
        got = await attempt()
      }
      if ('ended' in got) throw new Error(`libtorrent client ended (${got.ended}) before mapping\n${got.report}`)
      const { port, stop } = got
      try {
        expect(await nftList()).toContain(`tcp . ${port} : ${lab.ips.c1} . 6881`)
        const lease = wgpmp.lines.find((l) => l.msg === 'upnp: mapping added' && l.externalPort === port)
        expect(lease).toMatchObject({ client: lab.ips.c1, internalPort: 6881 })
        const nc = await lab.exec('inet', 'ncat', ['-z', '-w', '3', lab.ips.public, String(port)], { reject: false })
        expect(nc.exitCode).toBe(0)
      } finally {
        stop()
      }
    },
    100_000,
  )

  it("split tunnel: discovery needs 239.255.255.250/32 in the client's AllowedIPs (routing unchanged)", async () => {
    // c2's routes still send the group into its WireGuard interface; only AllowedIPs change, so
    // this shows what a split-tunnel client must add for wireguard-go to carry the search.
    const set = (allowed: string) => lab.exec('c2', 'wg', ['set', lab.ifaces.c2Wg, 'peer', lab.pubkeys.srv, 'allowed-ips', allowed])
    try {
      await set('10.8.0.0/24')
      expect(await upnpc('c2', ['-s'])).not.toContain(`${lab.ips.wgSrv}:2869/ctl/IPConn`)
      expect(await upnpc('c2', ['-u', url, '-s'])).toContain(`ExternalIPAddress = ${lab.ips.public}`) // the URL still works
      await set('10.8.0.0/24,239.255.255.250/32')
      expect(await upnpc('c2', ['-s'])).toContain(`${lab.ips.wgSrv}:2869/ctl/IPConn`)
    } finally {
      await set('0.0.0.0/0,::/0')
    }
  }, 60_000)
})
