/** A tiny NAT-PMP client over a real UDP socket, for daemon tests and the benchmark. */
import { createSocket, type Socket } from 'node:dgram'
import { decodeResponse } from '../../src/protocol/natpmp.js'

export class TestClient {
  private constructor(
    private readonly sock: Socket,
    private readonly server: { address: string; port: number },
  ) {}

  /** Binds to `bindAddress` (e.g. 127.0.0.2 to act as a second client) on a random port. */
  static async open(bindAddress: string, server: { address: string; port: number }, type: 'udp4' | 'udp6' = 'udp4'): Promise<TestClient> {
    const sock = createSocket(type)
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject)
      sock.bind(0, bindAddress, () => resolve())
    })
    return new TestClient(sock, server)
  }

  /** Sends raw bytes and waits for one reply (raw), or null after timeoutMs. */
  sendRaw(bytes: Uint8Array, timeoutMs = 1000): Promise<Uint8Array | null> {
    return new Promise((resolve) => {
      const onMsg = (msg: Buffer, rinfo: { address: string; port: number }): void => {
        if (rinfo.port !== this.server.port) return
        clearTimeout(t)
        this.sock.off('message', onMsg)
        resolve(new Uint8Array(msg))
      }
      const t = setTimeout(() => {
        this.sock.off('message', onMsg)
        resolve(null)
      }, timeoutMs)
      this.sock.on('message', onMsg)
      this.sock.send(bytes, this.server.port, this.server.address)
    })
  }

  async send(bytes: Uint8Array, timeoutMs = 1000): Promise<ReturnType<typeof decodeResponse> & { length: number }> {
    const raw = await this.sendRaw(bytes, timeoutMs)
    if (!raw) throw new Error('no reply')
    const d = decodeResponse(raw)
    if (!d) throw new Error(`undecodable reply ${Buffer.from(raw).toString('hex')}`)
    return { ...d, length: raw.byteLength }
  }

  close(): void {
    this.sock.close()
  }
}
