/**
 * NAT-PMP front-end (RFC 6886): wire ↔ forwarder. Decodes a request, asks the forwarder, and
 * encodes its answer; the forwarder has committed the forward to the kernel by then.
 */
import type { Protocol } from '../../core/forward.js'
import type { Refusal } from '../../core/refusal.js'
import { Opcode, ResultCode, type ResultCode as Result } from '../../protocol/constants.js'
import { decodeRequest, encodeErrorReply, encodeMapResponse, encodePublicAddressResponse, type MapOpcode } from '../../protocol/natpmp.js'
import type { FrontendContext } from '../context.js'

/** NAT-PMP's answer for a refusal (RFC 6886 §3.5): the one place it is chosen. */
export const natpmpResultFor = (r: Refusal): Result =>
  r === 'not-a-client' || r === 'bad-client' || r === 'nonce-mismatch'
    ? ResultCode.NotAuthorized
    : r === 'kernel-refused' || r === 'internal-error'
      ? ResultCode.NetworkFailure
      : ResultCode.OutOfResources

const protocolOf = (op: MapOpcode): Protocol => (op === Opcode.MapUdp ? 'udp' : 'tcp')

export class NatPmpService {
  constructor(private readonly d: FrontendContext) {}

  /** The reply bytes, or null to send nothing. Never throws. NAT-PMP is IPv4 only (RFC 6886): an IPv6 sender gets nothing. */
  async handle(buf: Uint8Array, source: string): Promise<Uint8Array | null> {
    if (source.includes(':')) return null
    const epoch = this.d.epochSeconds()
    const decoded = decodeRequest(buf)
    if (!decoded.ok) {
      if (decoded.reply) this.d.count?.(decoded.reply.op, decoded.reply.result)
      this.d.log.debug({ source, len: buf.byteLength, result: decoded.reply?.result ?? 'dropped' }, 'natpmp: not served')
      return decoded.reply ? encodeErrorReply(decoded.reply, epoch) : null
    }
    const req = decoded.value
    if (req.op === Opcode.PublicAddress) {
      const pub = this.d.publicAddress(source)
      const result = !(await this.d.forwarder.admit(source)) ? ResultCode.NotAuthorized : pub ? ResultCode.Success : ResultCode.NetworkFailure
      this.d.count?.(req.op, result)
      return encodePublicAddressResponse(result, epoch, pub)
    }
    const reply = (result: Result, externalPort = 0, lifetimeSeconds = 0): Uint8Array => {
      this.d.count?.(req.op, result)
      return encodeMapResponse({ op: req.op, result, internalPort: req.internalPort, externalPort, lifetimeSeconds }, this.d.epochSeconds())
    }
    const protocol = protocolOf(req.op)
    if (req.lifetimeSeconds === 0) {
      // RFC 6886 §3.4: the suggested external port is ignored; internal 0 deletes all of this protocol.
      const r = await this.d.forwarder.delete({ client: source, protocols: [protocol], internalPort: req.internalPort, via: 'nat-pmp' })
      return r.ok ? reply(ResultCode.Success) : reply(natpmpResultFor(r.refusal))
    }
    const r = await this.d.forwarder.map({
      client: source,
      protocol,
      internalPort: req.internalPort,
      suggestedExternalPort: req.suggestedExternalPort,
      lifetimeSeconds: req.lifetimeSeconds,
      origin: 'nat-pmp',
    })
    return r.ok ? reply(ResultCode.Success, r.lease.externalPort, r.lease.lifetimeSeconds) : reply(natpmpResultFor(r.refusal))
  }
}
