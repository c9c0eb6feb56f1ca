/**
 * Issue 4, end to end: clients are the WireGuard peers of the server's interface. Real namespaces,
 * real WireGuard (wireguard-go), the built daemon (dist/) in the server namespace, natpmpc in the
 * clients, socat traffic from the "internet" namespace, the HTTP API through undici inside the
 * server namespace (it listens on that namespace's loopback).
 *
 *  - a request from an address that is not a peer's own gets result 2 and creates nothing;
 *  - the API: clients, static forwards created, listed, carrying traffic, surviving a restart,
 *    deleted; bad token 401; bad input 400; unknown ids 404; taken port 409;
 *  - a peer removed with `wg set … peer X remove` loses its forwards within 5 s, traffic stops;
 *  - a disconnected peer (short peer_disconnect_seconds) loses its NAT-PMP forwards and keeps its
 *    static one, which still carries traffic.
 */
import { chmod, readFile, writeFile } from 'node:fs/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ConfigInput } from '../../src/config/schema.js'
import { apiClient, hasForward, natpmpMap, natpmpPublicAddress, natpmpRequest, nftForwards, serveTcp, type ApiClient } from './e2e-tools.js'
import { isRoot, startLab, waitFor, type Lab } from './lab.js'
import { talk } from './traffic.js'
import { labConfig, natpmpc, startWgpmp, type Wgpmp } from './wgpmp-proc.js'

const API_PORT = 18181
const TOKEN = 'peers-e2e-token-0123456789abcdef'

interface ClientJson {
  id: string
  public_key: string
  addresses: string[]
  connected: boolean
}
interface ForwardJson {
  id: string
  client_id: string
  protocol: string
  external_port: number | string
  internal_port: number | string
  client_address: string | null
  origin: string
  removable: boolean
}

describe.runIf(isRoot)('clients are WireGuard peers (issue 4, end to end)', () => {
  let lab: Lab
  let wgpmp: Wgpmp | undefined
  let api: ApiClient
  let config: ConfigInput
  let c1Id = ''
  let c2Id = ''
  const web = (): string => `c1-web ${lab.ips.inet}`
  /** A peer's allowed IPs on interface `ifname` in namespace `ns`, comma-separated as `wg set` takes them. */
  const allowedIps = async (ns: 'srv' | 'c1', ifname: string, pubkey: string): Promise<string> => {
    const out = (await lab.exec(ns, 'wg', ['show', ifname, 'allowed-ips'])).stdout
    const ips = out
      .split('\n')
      .find((l) => l.startsWith(pubkey))
      ?.split('\t')[1]
      ?.trim()
      .split(/\s+/)
    if (!ips || ips.length === 0 || ips[0] === '(none)') throw new Error(`no allowed IPs for ${pubkey} in ${ns}`)
    return ips.join(',')
  }

  beforeAll(async () => {
    lab = await startLab()
    const tokenFile = `${lab.dir}/api-token`
    await writeFile(tokenFile, `${TOKEN}\n`, { mode: 0o600 })
    await chmod(tokenFile, 0o600)
    config = labConfig(lab, {
      port_forward_min_port: 20000,
      port_forward_max_port: 20999,
      api_token_file: tokenFile,
      api_listen: `127.0.0.1:${API_PORT}`,
      peer_refresh_seconds: 1,
    })
    wgpmp = await startWgpmp(lab, config)
    api = apiClient(lab, API_PORT, TOKEN)
    await serveTcp(lab, 'c1', lab.ips.c1, 8080, 'c1-web')
    await serveTcp(lab, 'c1', lab.ips.c1, 8081, 'c1-web')
    await serveTcp(lab, 'c2', lab.ips.c2, 8080, 'c2-web')
  })
  afterAll(async () => {
    await wgpmp?.stop()
    await lab?.down()
  })

  it("a NAT-PMP request from an address that is not a peer's own gets result 2 and creates nothing", async () => {
    // 10.8.0.48/29 is routed through c1 (WireGuard lets it in), inside wg_address_v4's prefix, but
    // it is not any peer's tunnel address (/32): like a host on a LAN behind c1, or a spoofed source.
    // (A spare address on the server's own interface would not do: its packets arrive on lo, and
    // the table's input guard drops NAT-PMP from anything but the WireGuard interface.)
    const spare = '10.8.0.50'
    const c1Allowed = await allowedIps('srv', lab.ifaces.srvWg, lab.pubkeys.c1)
    expect(c1Allowed).toContain(`${lab.ips.c1}/32`)
    await lab.exec('srv', 'wg', ['set', lab.ifaces.srvWg, 'peer', lab.pubkeys.c1, 'allowed-ips', `${c1Allowed},10.8.0.48/29`])
    await lab.exec('c1', 'ip', ['address', 'add', `${spare}/32`, 'dev', lab.ifaces.c1Wg])
    try {
      const map = await natpmpRequest(lab, 'c1', spare, natpmpMap('tcp', 8080, 20050, 3600))
      expect(map).toMatchObject({ len: 16, version: 0, op: 128 + 2, result: 2, externalPort: 0, lifetime: 0 })
      const pub = await natpmpRequest(lab, 'c1', spare, natpmpPublicAddress())
      expect(pub).toMatchObject({ len: 12, version: 0, op: 128, result: 2, publicV4: '0.0.0.0' })
      const forwards = await nftForwards(lab)
      expect(forwards).not.toContain(spare)
      expect(hasForward(forwards, 'tcp', 20050)).toBe(false)
      expect(wgpmp!.lines.some((l) => l.msg === 'refused, not a client' && l.via === 'nat-pmp' && l.source === spare)).toBe(true)

      // Control: the same probe from c1's own tunnel address is served (so result 2 above is about the sender).
      const own = await natpmpRequest(lab, 'c1', lab.ips.c1, natpmpPublicAddress())
      expect(own).toMatchObject({ len: 12, result: 0, publicV4: lab.ips.public })
    } finally {
      await lab.exec('c1', 'ip', ['address', 'del', `${spare}/32`, 'dev', lab.ifaces.c1Wg], { reject: false })
      await lab.exec('srv', 'wg', ['set', lab.ifaces.srvWg, 'peer', lab.pubkeys.c1, 'allowed-ips', c1Allowed])
    }
  })

  it('the API lists the peers; a bad or missing token gets 401 with no detail', async () => {
    const r = await api.call('GET', '/api/clients')
    expect(r.status).toBe(200)
    const clients = r.json as ClientJson[]
    const c1 = clients.find((c) => c.public_key === lab.pubkeys.c1)
    const c2 = clients.find((c) => c.public_key === lab.pubkeys.c2)
    expect(c1?.addresses).toContain(lab.ips.c1)
    expect(c2?.addresses).toContain(lab.ips.c2)
    expect(c1?.addresses).not.toContain(lab.ips.c2)
    expect(c1?.id).toMatch(/^[A-Za-z0-9_-]{12}$/)
    c1Id = c1!.id
    c2Id = c2!.id

    for (const token of ['wrong-token-0123456789abcdef', null, '']) {
      const bad = await api.call('GET', '/api/clients', { token })
      expect(bad.status).toBe(401)
      expect(bad.json).toEqual({ error: 'unauthorized' })
      expect(bad.text).not.toContain(lab.pubkeys.c1)
    }
    const badPost = await api.call('POST', `/api/clients/${c1Id}/portforwards`, {
      token: 'nope-nope-nope-nope-nope',
      body: { protocol: 'tcp', external_port: 20510 },
    })
    expect(badPost.status).toBe(401)
    expect(hasForward(await nftForwards(lab), 'tcp', 20510)).toBe(false)
    expect((await api.call('GET', '/metrics', { token: null })).status).toBe(401)
  })

  it('a static forward created through the API carries real traffic, is listed, and NAT-PMP cannot take its port', async () => {
    expect(c1Id).not.toBe('')
    const r = await api.call('POST', `/api/clients/${c1Id}/portforwards`, { body: { protocol: 'tcp', external_port: 20500, internal_port: 8080 } })
    expect(r.status, r.text).toBe(201)
    const f = r.json as ForwardJson
    expect(f).toMatchObject({
      client_id: c1Id,
      protocol: 'tcp',
      external_port: 20500,
      internal_port: 8080,
      client_address: lab.ips.c1,
      origin: 'static',
      removable: true,
    })
    expect(await nftForwards(lab)).toContain(`tcp . 20500 : ${lab.ips.c1} . 8080`)
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20500)).toBe(web())

    const all = (await api.call('GET', '/api/portforwards')).json as ForwardJson[]
    expect(all.filter((x) => x.id === f.id)).toHaveLength(1)
    const mine = await api.call('GET', `/api/clients/${c1Id}/portforwards`)
    expect(mine.status).toBe(200)
    expect((mine.json as ForwardJson[]).map((x) => x.id)).toContain(f.id)
    const theirs = await api.call('GET', `/api/clients/${c2Id}/portforwards`)
    expect((theirs.json as ForwardJson[]).map((x) => x.id)).not.toContain(f.id)

    // The same port for the other client: 409. NAT-PMP asking for it gets another port.
    const taken = await api.call('POST', `/api/clients/${c2Id}/portforwards`, { body: { protocol: 'tcp', external_port: 20500 } })
    expect(taken.status).toBe(409)
    const pmp = await natpmpc(lab, 'c2', ['-a', '20500', '8080', 'tcp', '3600'])
    expect(pmp.port).not.toBeNull()
    expect(pmp.port).not.toBe(20500)
    expect(await nftForwards(lab)).toContain(`tcp . 20500 : ${lab.ips.c1} . 8080`)
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20500)).toBe(web())
    await natpmpc(lab, 'c2', ['-a', '0', '8080', 'tcp', '0'])

    // Bad input: 400 with the reason; unknown client: 404; wrong content type: 415; unknown route: 404.
    const bad = await api.call('POST', `/api/clients/${c1Id}/portforwards`, { body: { protocol: 'sctp', external_port: 70000 } })
    expect(bad.status).toBe(400)
    expect(bad.text).toMatch(/protocol|external_port/)
    expect((await api.call('POST', `/api/clients/${c1Id}/portforwards`, { rawBody: '{"protocol":' })).status).toBe(400)
    expect(
      (await api.call('POST', `/api/clients/${c1Id}/portforwards`, { body: { protocol: 'tcp', external_port: 20520 }, contentType: 'text/plain' })).status,
    ).toBe(415)
    expect((await api.call('POST', '/api/clients/AAAAAAAAAAAA/portforwards', { body: { protocol: 'tcp', external_port: 20521 } })).status).toBe(404)
    expect((await api.call('GET', '/api/clients/AAAAAAAAAAAA/portforwards')).status).toBe(404)
    expect((await api.call('GET', '/api/nothing-here')).status).toBe(404)
    const map = await nftForwards(lab)
    for (const p of [20520, 20521]) expect(hasForward(map, 'tcp', p)).toBe(false)
  })

  it('the static forward survives a daemon restart (SIGTERM, start again) and carries traffic; DELETE removes it', async () => {
    expect(await wgpmp!.stop('SIGTERM')).toBe(0)
    wgpmp = undefined
    expect((await lab.exec('srv', 'nft', ['list', 'tables'])).stdout).not.toContain('wgpmp')
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20500)).toBe('')
    expect(await readFile(config.state_file!, 'utf8')).toContain('20500')

    wgpmp = await startWgpmp(lab, config)
    expect(await nftForwards(lab)).toContain(`tcp . 20500 : ${lab.ips.c1} . 8080`)
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20500)).toBe(web())
    const listed = ((await api.call('GET', `/api/clients/${c1Id}/portforwards`)).json as ForwardJson[]).find((x) => x.external_port === 20500)
    expect(listed).toMatchObject({ origin: 'static', client_address: lab.ips.c1, protocol: 'tcp' })

    expect((await api.call('DELETE', `/api/clients/${c1Id}/portforwards/${listed!.id}`, { token: 'wrong-token-0123456789abcdef' })).status).toBe(401)
    expect((await api.call('DELETE', `/api/clients/${c2Id}/portforwards/${listed!.id}`)).status).toBe(404) // not c2's
    expect(await nftForwards(lab)).toContain(`tcp . 20500 : ${lab.ips.c1} . 8080`)
    const del = await api.call('DELETE', `/api/clients/${c1Id}/portforwards/${listed!.id}`)
    expect(del.status).toBe(204)
    expect(hasForward(await nftForwards(lab), 'tcp', 20500)).toBe(false)
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20500)).toBe('')
    expect(((await api.call('GET', '/api/portforwards')).json as ForwardJson[]).some((x) => x.id === listed!.id)).toBe(false)
    expect((await api.call('DELETE', `/api/clients/${c1Id}/portforwards/${listed!.id}`)).status).toBe(404)
    await waitFor(async () => !(await readFile(config.state_file!, 'utf8')).includes('20500'), {
      timeoutMs: 3_000,
      what: 'the state file to forget the deleted forward',
    })
  })

  it('a peer removed with `wg set … peer X remove` loses its forwards within 5 s and its traffic stops; others keep theirs', async () => {
    const lease = await natpmpc(lab, 'c2', ['-a', '20600', '8080', 'tcp', '3600'])
    expect(lease.port).toBe(20600)
    const st = await api.call('POST', `/api/clients/${c2Id}/portforwards`, { body: { protocol: 'tcp', external_port: 20601, internal_port: 8080 } })
    expect(st.status, st.text).toBe(201)
    const c1Lease = await natpmpc(lab, 'c1', ['-a', '20610', '8080', 'tcp', '3600'])
    expect(c1Lease.port).toBe(20610)
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20600)).toBe(`c2-web ${lab.ips.inet}`)
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20601)).toBe(`c2-web ${lab.ips.inet}`)

    const dump = (await lab.exec('srv', 'wg', ['show', lab.ifaces.srvWg, 'endpoints'])).stdout
    const endpoint = dump
      .split('\n')
      .find((l) => l.startsWith(lab.pubkeys.c2))
      ?.split('\t')[1]
    expect(endpoint).toMatch(/^192\.0\.2\.6:\d+$/)

    const c2Allowed = await allowedIps('srv', lab.ifaces.srvWg, lab.pubkeys.c2)
    const t0 = performance.now()
    await lab.exec('srv', 'wg', ['set', lab.ifaces.srvWg, 'peer', lab.pubkeys.c2, 'remove'])
    await waitFor(
      async () => {
        const m = await nftForwards(lab)
        return !hasForward(m, 'tcp', 20600) && !hasForward(m, 'tcp', 20601)
      },
      { timeoutMs: 5_000, intervalMs: 50, what: "the removed peer's forwards to leave the kernel" },
    )
    const ms = Math.round(performance.now() - t0)
    console.log(`peer removed -> forwards gone in ${ms} ms`)
    expect(ms).toBeLessThanOrEqual(5_000)
    const m = await nftForwards(lab)
    expect(m).not.toContain(lab.ips.c2)
    expect(m).toContain(`tcp . 20610 : ${lab.ips.c1} . 8080`)
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20600)).toBe('')
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20601)).toBe('')
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20610)).toBe(web())
    expect(wgpmp!.lines.some((l) => l.msg === 'peer removed' && l.client === c2Id)).toBe(true)
    const clients = (await api.call('GET', '/api/clients')).json as ClientJson[]
    expect(clients.map((c) => c.id)).not.toContain(c2Id)

    // The peer comes back (same key, same address): its static forward is installed again and
    // works; the NAT-PMP lease is gone for good (the client asks again).
    await lab.exec('srv', 'wg', ['set', lab.ifaces.srvWg, 'peer', lab.pubkeys.c2, 'allowed-ips', c2Allowed, 'endpoint', endpoint!])
    await waitFor(async () => (await nftForwards(lab)).includes(`tcp . 20601 : ${lab.ips.c2} . 8080`), { timeoutMs: 5_000, what: 'the static forward back' })
    expect(hasForward(await nftForwards(lab), 'tcp', 20600)).toBe(false)
    expect(
      await waitFor(async () => (await talk(lab, 'inet', 'tcp', lab.ips.public, 20601)) === `c2-web ${lab.ips.inet}`, {
        timeoutMs: 10_000,
        intervalMs: 500,
        what: 'traffic to the returned peer',
      }),
    ).toBe(true)
  })

  it('a disconnected peer loses its NAT-PMP forwards and keeps its static ones, which still carry traffic', async () => {
    // A second daemon with a 5 s disconnect time. WireGuard handshakes only every ~120 s, so every
    // peer counts as disconnected a few seconds after its last handshake. The test forces a fresh
    // handshake from c1 (re-adding the server peer on c1 makes it handshake at once), maps a port
    // while c1 is connected, and watches the daemon withdraw that lease once the handshake is 5 s old.
    await wgpmp!.stop('SIGTERM')
    wgpmp = undefined
    wgpmp = await startWgpmp(
      lab,
      labConfig(lab, {
        port_forward_min_port: 20000,
        port_forward_max_port: 20999,
        state_file: `${lab.dir}/state-disconnect.json`,
        peer_disconnect_seconds: 5,
        peer_refresh_seconds: 1,
        static_forwards: { [lab.pubkeys.c1]: ['20700:8080/tcp'] },
      }),
      'config-disconnect',
    )
    const d = wgpmp
    expect(await nftForwards(lab)).toContain(`tcp . 20700 : ${lab.ips.c1} . 8080`)
    const c1Lines = (msg: string): Record<string, unknown>[] => d.lines.filter((l) => l.msg === msg && l.client === c1Id)
    // c1's last handshake is older than 5 s (the lab and the tests above took longer): it starts disconnected.
    const hs = (await lab.exec('srv', 'wg', ['show', lab.ifaces.srvWg, 'latest-handshakes'])).stdout
    const age =
      Date.now() / 1000 -
      Number(
        hs
          .split('\n')
          .find((l) => l.startsWith(lab.pubkeys.c1))
          ?.split('\t')[1],
      )
    expect(age).toBeGreaterThan(6)

    const srvAllowed = await allowedIps('c1', lab.ifaces.c1Wg, lab.pubkeys.srv)
    const handshake = async (): Promise<void> => {
      const before = c1Lines('peer reconnected').length
      await lab.exec('c1', 'wg', ['set', lab.ifaces.c1Wg, 'peer', lab.pubkeys.srv, 'remove'])
      await lab.exec('c1', 'wg', [
        'set',
        lab.ifaces.c1Wg,
        'peer',
        lab.pubkeys.srv,
        'endpoint',
        `${lab.ips.public}:${lab.wgPort}`,
        'allowed-ips',
        srvAllowed,
        'persistent-keepalive',
        '5',
      ])
      await lab.exec('c1', 'ping', ['-c1', '-W2', lab.ips.wgSrv], { reject: false })
      await waitFor(() => c1Lines('peer reconnected').length > before, { timeoutMs: 4_000, intervalMs: 50, what: 'c1 reconnected' })
    }

    await handshake()
    // The lease is for another local port than the static forward's: a request for internal 8080
    // would get the static forward's own port 20700 (issue 10 §1).
    const lease = await natpmpc(lab, 'c1', ['-a', '20710', '8081', 'tcp', '3600'])
    expect(lease.port).toBe(20710)
    expect(hasForward(await nftForwards(lab), 'tcp', 20710)).toBe(true)

    const withdrawn = await d.waitLog('leases withdrawn', 10_000)
    expect(withdrawn).toMatchObject({ client: lab.ips.c1, why: 'peer disconnected', forwards: ['tcp/20710'] })
    expect(c1Lines('peer disconnected').length).toBeGreaterThan(0)
    const m = await nftForwards(lab)
    expect(hasForward(m, 'tcp', 20710)).toBe(false)
    expect(m).toContain(`tcp . 20700 : ${lab.ips.c1} . 8080`)
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20710)).toBe('')
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20700)).toBe(web())

    // Reconnected: the static forward was never touched and still works; NAT-PMP works again.
    await handshake()
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20700)).toBe(web())
    const again = await natpmpc(lab, 'c1', ['-a', '20711', '8081', 'tcp', '3600'])
    expect(again.port).toBe(20711)
    expect(await talk(lab, 'inet', 'tcp', lab.ips.public, 20711)).toBe(web())
  })
})
