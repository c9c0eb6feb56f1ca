import { afterEach, describe, expect, it } from 'vitest'
import { parseConfig } from '../../../src/config/load.js'
import type { ConfigInput } from '../../../src/config/schema.js'
import { startDaemon } from '../../../src/daemon.js'
import { MemoryDriver } from '../../../src/drivers/memory.js'
import { WgpmpError } from '../../../src/core/errors.js'
import { silentLogger } from '../../../src/log.js'
import { Opcode, ResultCode } from '../../../src/protocol/constants.js'
import { encodeRequest } from '../../../src/protocol/natpmp.js'
import { startTestDaemon, A, type TestDaemon } from '../../helpers/daemon.js'
import { TestClient } from '../../helpers/natpmp-client.js'

let t: TestDaemon | null = null
const clients: TestClient[] = []

async function start(over: ConfigInput = {}) {
  t = await startTestDaemon(over)
  return t
}
const map = (op: 1 | 2, internalPort: number, suggestedExternalPort: number, lifetimeSeconds: number): Uint8Array =>
  encodeRequest({ op, internalPort, suggestedExternalPort, lifetimeSeconds })

afterEach(async () => {
  for (const c of clients.splice(0)) c.close()
  await t?.stop()
  t = null
})

describe('daemon over UDP (memory driver, fake clock)', () => {
  it('reports the public address and the epoch', async () => {
    const { a, clock } = await start()
    clock.advance(42_000)
    expect(await a.send(encodeRequest({ op: Opcode.PublicAddress }))).toEqual({ op: 0, result: 0, epochSeconds: 42, publicV4: '198.51.100.1', length: 12 })
  })
  it('maps TCP and UDP, forwards reach the kernel before the reply', async () => {
    const { a, driver } = await start()
    const t = await a.send(map(2, 8080, 8080, 3600))
    expect(t).toMatchObject({ op: 2, result: 0, internalPort: 8080, externalPort: 8080, lifetimeSeconds: 3600, length: 16 })
    const u = await a.send(map(1, 51413, 0, 60))
    expect(u).toMatchObject({ op: 1, result: 0, internalPort: 51413, lifetimeSeconds: 120 })
    expect(driver.dump()).toEqual([`tcp/8080 -> ${A}:8080`, `udp/${u.externalPort} -> ${A}:51413`])
  })
  it('never grants the WireGuard listen port', async () => {
    const { a } = await start()
    const r = await a.send(map(1, 51820, 51820, 3600))
    expect(r.result).toBe(0)
    expect(r.externalPort).not.toBe(51820)
  })
  it('symmetric ProtonVPN-style loop: internal 0 echoed, same port for UDP and TCP and on renewal', async () => {
    const { a, driver } = await start()
    const u = await a.send(map(1, 0, 1, 60))
    const t = await a.send(map(2, 0, 1, 60))
    expect(u.internalPort).toBe(0)
    expect(t.externalPort).toBe(u.externalPort)
    const again = await a.send(map(1, 0, u.externalPort!, 60))
    expect(again.externalPort).toBe(u.externalPort)
    expect(driver.dump()).toEqual([`tcp/${u.externalPort} -> ${A}:${u.externalPort}`, `udp/${u.externalPort} -> ${A}:${u.externalPort}`])
  })
  it("another client is denied the first one's port and cannot delete it", async () => {
    const { a, b, driver } = await start()
    await a.send(map(2, 8080, 40000, 3600))
    const rb = await b.send(map(2, 8080, 40000, 3600))
    expect(rb.result).toBe(0)
    expect(rb.externalPort).not.toBe(40000)
    const del = await b.send(map(2, 0, 0, 0))
    expect(del).toMatchObject({ result: 0, externalPort: 0, lifetimeSeconds: 0 })
    expect(driver.dump()).toEqual([`tcp/40000 -> ${A}:8080`])
  })
  it('lifetime 0 deletes; internal 0 + lifetime 0 deletes all of that protocol', async () => {
    const { a, driver } = await start()
    await a.send(map(2, 1001, 0, 3600))
    await a.send(map(2, 1002, 0, 3600))
    const u = await a.send(map(1, 1003, 0, 3600))
    expect(await a.send(map(2, 1001, 9, 0))).toMatchObject({ result: 0, internalPort: 1001, externalPort: 0, lifetimeSeconds: 0 })
    expect(driver.dump()).toHaveLength(2)
    await a.send(map(2, 0, 0, 0))
    expect(driver.dump()).toEqual([`udp/${u.externalPort} -> ${A}:1003`])
  })
  it('expires a lease when its lifetime lapses and removes the forward', async () => {
    const { a, driver, clock } = await start()
    await a.send(map(2, 8080, 0, 120))
    clock.advance(119_000)
    expect(driver.dump()).toHaveLength(1)
    clock.advance(1_000)
    await new Promise((r) => setTimeout(r, 20))
    expect(driver.dump()).toEqual([])
  })
  it('answers result 3 and keeps state consistent when the kernel refuses', async () => {
    const { a, driver } = await start()
    driver.failNext = new WgpmpError('WGPMP_KERNEL_REFUSED', 'boom')
    expect(await a.send(map(2, 8080, 8080, 3600))).toMatchObject({ result: ResultCode.NetworkFailure, externalPort: 0, lifetimeSeconds: 0 })
    expect(t!.daemon.table!.size).toBe(0)
    expect(await a.send(map(2, 8080, 8080, 3600))).toMatchObject({ result: 0, externalPort: 8080 })
  })
  it('with PCP off, answers version 2 with the 8-byte unsupported-version reply; unknown opcodes with 5', async () => {
    const { a } = await start({ pcp_enabled: false })
    const v2 = await a.sendRaw(Uint8Array.from([2, 1, 0, 0, ...new Array<number>(56).fill(0)]))
    expect(Buffer.from(v2!).toString('hex').slice(0, 8)).toBe('00800001')
    expect(v2!.byteLength).toBe(8)
    expect(await a.send(Uint8Array.of(0, 9, 0, 0))).toMatchObject({ op: 9, result: ResultCode.UnsupportedOpcode, length: 8 })
  })
  it('drops what it cannot answer and keeps serving', async () => {
    const { a } = await start()
    expect(await a.sendRaw(Uint8Array.of(0), 150)).toBeNull()
    expect(await a.sendRaw(Uint8Array.of(0, 0x81, 0, 0), 150)).toBeNull()
    expect(await a.sendRaw(Uint8Array.of(0, 1, 0, 0, 0, 1), 150)).toBeNull()
    expect((await a.send(encodeRequest({ op: 0 }))).result).toBe(0)
  })
  it('refuses sources outside the WireGuard prefix with result 2', async () => {
    await start({ wg_address_v4: '127.0.0.1/30' })
    const outsider = await TestClient.open('127.0.0.9', t!.daemon.udpAddress!)
    clients.push(outsider)
    expect((await outsider.send(map(2, 80, 80, 60))).result).toBe(ResultCode.NotAuthorized)
    expect((await outsider.send(encodeRequest({ op: 0 }))).result).toBe(ResultCode.NotAuthorized)
  })
  it('answers 4 when the port range is exhausted', async () => {
    const { a, b } = await start({ port_forward_min_port: 30000, port_forward_max_port: 30000 })
    expect((await a.send(map(2, 1, 0, 60))).externalPort).toBe(30000)
    expect((await b.send(map(2, 1, 0, 60))).result).toBe(ResultCode.OutOfResources)
  })
  it('does nothing when port forwarding is disabled', async () => {
    const driver = new MemoryDriver()
    const d = await startDaemon(parseConfig({}), { driver, log: silentLogger() })
    expect(d.udpAddress).toBeNull()
    expect(driver.base).toBeNull()
  })
  it('close() tears the table down', async () => {
    const { a, driver } = await start()
    await a.send(map(2, 8080, 8080, 3600))
    await t!.daemon.close()
    expect(driver.base).toBeNull()
    expect(driver.dump()).toEqual([])
  })
})
