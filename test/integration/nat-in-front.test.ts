/**
 * A server behind 1:1 NAT (a cloud VM's elastic IP) or wg-easy on a Docker bridge: the address the
 * internet uses is not an address of the server's namespace, and forwarded packets arrive for the
 * public interface's own address. Here the lab's internet namespace plays the upstream NAT: it
 * translates 203.0.113.7 (what wgpmp is told to announce) to the server's eth0 address 198.51.100.1,
 * as a cloud's NAT or Docker's `ports:` DNAT does. NAT-PMP must report 203.0.113.7, and a
 * connection to 203.0.113.7:port must reach the client.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isRoot, startLab, type Lab } from './lab.js'
import { listen, talk } from './traffic.js'
import { labConfig, natpmpc, startWgpmp, type Wgpmp } from './wgpmp-proc.js'

const ANNOUNCED = '203.0.113.7'

describe.runIf(isRoot)('behind 1:1 NAT: the announced address is not local', () => {
  let lab: Lab
  let wgpmp: Wgpmp

  beforeAll(async () => {
    lab = await startLab()
    // The upstream NAT, inside the lab's internet namespace only.
    await lab.exec('inet', 'ip', ['route', 'add', `${ANNOUNCED}/32`, 'dev', `isrv-${lab.id}`])
    await lab.exec('inet', 'nft', ['-f', '-'], {
      input: `table ip upstream {\n  chain out {\n    type nat hook output priority -100; policy accept;\n    ip daddr ${ANNOUNCED} dnat to ${lab.ips.public}\n  }\n}\n`,
    })
    wgpmp = await startWgpmp(lab, labConfig(lab, { public_address_v4: ANNOUNCED, port_forward_min_port: 20000, port_forward_max_port: 20100 }))
    await listen(lab, 'c1', 'tcp', lab.ips.c1, 8080, 'c1-web')
    await listen(lab, 'c1', 'udp', lab.ips.c1, 9001, 'c1-udp')
  })
  afterAll(async () => {
    await wgpmp?.stop()
    await lab?.down()
  })

  it('reports the announced address, and forwards what arrives for eth0 as well (said once at start)', async () => {
    expect((await natpmpc(lab, 'c1', [])).out).toContain(`Public IP address : ${ANNOUNCED}`)
    const set = (await lab.exec('srv', 'nft', ['list', 'set', 'inet', 'wgpmp', 'public_v4'])).stdout
    expect(set).toMatch(new RegExp(`elements = \\{ (${ANNOUNCED}, ${lab.ips.public}|${lab.ips.public}, ${ANNOUNCED}) \\}`))
    expect(await wgpmp.waitLog(/not an address of this host/)).toMatchObject({ publicAddress: ANNOUNCED, alsoForwarded: [lab.ips.public] })
  })

  it('a TCP and a UDP forward carry traffic sent to the announced address through the upstream NAT', async () => {
    const tcp = await natpmpc(lab, 'c1', ['-a', '20010', '8080', 'tcp', '3600'])
    expect(tcp.port).toBe(20010)
    expect(await talk(lab, 'inet', 'tcp', ANNOUNCED, 20010)).toBe(`c1-web ${lab.ips.inet}`)
    const udp = await natpmpc(lab, 'c1', ['-a', '20011', '9001', 'udp', '3600'])
    expect(udp.port).toBe(20011)
    expect(await talk(lab, 'inet', 'udp', ANNOUNCED, 20011)).toBe(`c1-udp ${lab.ips.inet}`)
  })

  it('a deleted forward stops carrying traffic', async () => {
    expect((await natpmpc(lab, 'c1', ['-a', '20010', '8080', 'tcp', '0'])).ok).toBe(true)
    expect(await talk(lab, 'inet', 'tcp', ANNOUNCED, 20010)).toBe('')
  })
})
