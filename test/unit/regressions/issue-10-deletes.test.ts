// Issue 10 §5: deletes ran one after another per client (each waited a whole kernel batch), so
// 64 requesters saw ~1,000 deletes/s against ~10,000 new mappings/s.
import { createSocket } from 'node:dgram'
import { afterEach, describe, expect, it } from 'vitest'
import { encodeRequest, decodeResponse } from '../../../src/protocol/natpmp.js'
import { A, startTestDaemon, type TestDaemon } from '../../helpers/daemon.js'

let t: TestDaemon | null = null
afterEach(async () => {
  await t?.stop()
  t = null
})
const map = (internalPort: number, lifetime: number) => encodeRequest({ op: 2, internalPort, suggestedExternalPort: 0, lifetimeSeconds: lifetime })

/** Sends every packet at once from A and resolves with the decoded replies (bounded: 2 s). */
async function burst(port: number, packets: Uint8Array[]) {
  const sock = createSocket('udp4')
  await new Promise<void>((r) => sock.bind(0, A, () => r()))
  const replies: ReturnType<typeof decodeResponse>[] = []
  const done = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 2000)
    sock.on('message', (m) => {
      replies.push(decodeResponse(new Uint8Array(m)))
      if (replies.length === packets.length) {
        clearTimeout(timer)
        resolve()
      }
    })
  })
  for (const p of packets) sock.send(p, port, '127.0.0.1')
  return {
    done: done.then(() => {
      sock.close()
      return replies
    }),
    count: () => replies.length,
  }
}

describe('issue 10 §5: deletes of different ports share kernel batches', () => {
  it('40 deletes of one client in flight together cost a few batches, not 40, and each is answered after its commit', async () => {
    t = await startTestDaemon({ rate_limit_per_second: 1000, rate_limit_burst: 1000 })
    for (let i = 0; i < 40; i++) expect((await t.a.send(map(7000 + i, 3600))).result).toBe(0)
    expect(t.driver.dump()).toHaveLength(40)
    let open!: () => void
    t.driver.gate = new Promise<void>((r) => (open = r))
    const before = t.driver.batches
    const b = await burst(
      t.daemon.udpAddress!.port,
      Array.from({ length: 40 }, (_, i) => map(7000 + i, 0)),
    )
    await new Promise((r) => setTimeout(r, 100))
    expect(t.driver.dump()).toHaveLength(40) // nothing answered, nothing removed while the kernel is held
    t.driver.gate = null
    open()
    const replies = await b.done
    expect(replies.map((r) => r?.result)).toEqual(Array(40).fill(0))
    expect(t.driver.dump()).toEqual([])
    expect(t.driver.batches - before).toBeLessThanOrEqual(3)
  })
  it("a one-port delete arriving during a delete-all is answered only after the delete-all's commit", async () => {
    t = await startTestDaemon({ rate_limit_per_second: 1000, rate_limit_burst: 1000 })
    for (let i = 0; i < 5; i++) await t.a.send(map(7000 + i, 3600))
    let open!: () => void
    t.driver.gate = new Promise<void>((r) => (open = r))
    const b = await burst(t.daemon.udpAddress!.port, [map(0, 0), map(7001, 0)])
    await new Promise((r) => setTimeout(r, 100))
    expect(b.count()).toBe(0) // the single delete found its lease gone, but its removal is not in the kernel yet
    t.driver.gate = null
    open()
    expect((await b.done).map((r) => r?.result)).toEqual([0, 0])
    expect(t.driver.dump()).toEqual([])
  })
})
