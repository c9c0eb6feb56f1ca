// Issue 10 §7: SIGTERM during a storm crashed the daemon (ERR_SOCKET_DGRAM_NOT_RUNNING: a reply
// sent on the closed UDP socket, server/udp.ts) and exited 1 without saving or removing the table.
import { createSocket } from 'node:dgram'
import { describe, expect, it } from 'vitest'
import { silentLogger } from '../../../src/log.js'
import { startUdpServer } from '../../../src/server/udp.js'

async function client() {
  const sock = createSocket('udp4')
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()))
  const got: string[] = []
  sock.on('message', (m) => got.push(m.toString()))
  return { sock, got }
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('issue 10 §7: the UDP socket stops cleanly under load', () => {
  it('requests in flight at close finish and are answered; requests after it are not taken; nothing throws', async () => {
    let started = 0
    const srv = await startUdpServer(
      '127.0.0.1',
      0,
      async (msg) => {
        started++
        await sleep(50)
        return msg
      },
      silentLogger(),
    )
    const c = await client()
    for (let i = 0; i < 5; i++) c.sock.send(`req${i}`, srv.address.port, '127.0.0.1')
    await sleep(20)
    const closing = srv.close()
    c.sock.send('late', srv.address.port, '127.0.0.1')
    await closing
    await sleep(50)
    expect(started).toBe(5)
    expect(c.got.sort()).toEqual(['req0', 'req1', 'req2', 'req3', 'req4'])
    c.sock.close()
  })
  it('a request still running after the grace gets no reply, and the late reply does not throw', async () => {
    const errors: unknown[] = []
    const onErr = (e: unknown) => errors.push(e)
    process.on('uncaughtException', onErr)
    process.on('unhandledRejection', onErr)
    try {
      const srv = await startUdpServer(
        '127.0.0.1',
        0,
        async (msg) => {
          await sleep(150)
          return msg
        },
        silentLogger(),
      )
      const c = await client()
      c.sock.send('slow', srv.address.port, '127.0.0.1')
      await sleep(20)
      await srv.close(30)
      await sleep(250) // the handler resolves after the socket closed
      expect(c.got).toEqual([])
      expect(errors).toEqual([])
      c.sock.close()
    } finally {
      process.off('uncaughtException', onErr)
      process.off('unhandledRejection', onErr)
    }
  })
})
