/**
 * PcpService: PCP (RFC 6887) MAP, ANNOUNCE and PEER over the same socket and lease table as
 * NAT-PMP. A PCP MAP and a NAT-PMP request for the same (client, protocol, internal port) are one
 * mapping, under the same limits, reserved ports and isolation.
 *
 * Policy (RFC 6887 leaves these to the server):
 * - THIRD_PARTY is refused with NOT_AUTHORIZED: a client maps only itself (§13.1).
 * - FILTER is refused with UNSUPP_OPTION (§13.3): wgpmp forwards whole ports; a client that needs
 *   filtering can retry without the option, and one that does not learn that it is not applied.
 * - PREFER_FAILURE is honoured: only the suggested port, else CANNOT_PROVIDE_EXTERNAL (§13.2).
 * - PEER is answered UNSUPP_OPCODE: wgpmp creates inbound forwards only.
 * - Only TCP and UDP; other protocols get UNSUPP_PROTOCOL.
 */
import type { Protocol } from '../../core/forward.js'
import type { Refusal } from '../../core/refusal.js'
import { PcpOpcode, PcpResult } from '../../protocol/constants.js'
import { decodePcpRequest, encodeAnnounceResponse, encodeMapResponse, pcpErrorReplyFor, type PcpRequest } from '../../protocol/pcp.js'
import type { FrontendContext } from '../context.js'

/** IANA protocol numbers (RFC 6887 §11.1 uses them). */
const IANA = { tcp: 6, udp: 17 } as const
const protocolOf = (n: number): Protocol | null => (n === IANA.tcp ? 'tcp' : n === IANA.udp ? 'udp' : null)

/** PCP's answer for a refusal (RFC 6887 §7.4): the one place it is chosen. */
export const pcpResultFor = (r: Refusal): number =>
  r === 'client-limit'
    ? PcpResult.UserExQuota
    : r === 'port-unavailable'
      ? PcpResult.CannotProvideExternal
      : r === 'not-a-client' || r === 'bad-client' || r === 'nonce-mismatch'
        ? PcpResult.NotAuthorized
        : r === 'kernel-refused' || r === 'internal-error'
          ? PcpResult.NetworkFailure
          : PcpResult.NoResources

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')

export class PcpService {
  constructor(private readonly d: FrontendContext) {}

  /** The reply bytes, or null to send nothing. Never throws. */
  async handle(buf: Uint8Array, source: string): Promise<Uint8Array | null> {
    const epoch = this.d.epochSeconds()
    const decoded = decodePcpRequest(buf, epoch)
    if (!decoded.ok) {
      this.d.log.debug({ source, len: buf.byteLength, reason: decoded.reason }, 'pcp: not served')
      if (decoded.result !== null) this.d.count?.(buf.byteLength > 1 ? (buf[1] ?? 0) & 0x7f : 0, decoded.result)
      return decoded.reply
    }
    const req = decoded.value
    const refuse = (result: number): Uint8Array | null => {
      this.d.count?.(req.opcode, result)
      return pcpErrorReplyFor(req.raw, result, this.d.epochSeconds())
    }
    if (!(await this.d.forwarder.admit(source))) return refuse(PcpResult.NotAuthorized)
    // §8.1: the client address field must be the packet's source (no NAT between client and us).
    if (req.clientAddress !== source) return refuse(PcpResult.AddressMismatch)
    if (req.opcode === PcpOpcode.Announce) {
      this.d.count?.(req.opcode, PcpResult.Success)
      return encodeAnnounceResponse(epoch)
    }
    if (req.opcode === PcpOpcode.Peer) return refuse(PcpResult.UnsuppOpcode)
    if (req.thirdParty) return refuse(PcpResult.NotAuthorized)
    if (req.filters.length > 0) return refuse(PcpResult.UnsuppOption)
    try {
      return await this.map(req, source)
    } catch (err) {
      this.d.log.error({ err, source }, 'pcp: internal error')
      return refuse(PcpResult.NetworkFailure)
    }
  }

  private async map(req: Extract<PcpRequest, { opcode: 1 }>, source: string): Promise<Uint8Array | null> {
    const m = req.map
    const nonce = hex(m.nonce)
    const refuse = (result: number): Uint8Array | null => {
      this.d.count?.(req.opcode, result)
      return pcpErrorReplyFor(req.raw, result, this.d.epochSeconds())
    }
    const answer = (externalPort: number, lifetimeSeconds: number): Uint8Array => {
      this.d.count?.(req.opcode, PcpResult.Success)
      return encodeMapResponse({
        result: PcpResult.Success,
        lifetimeSeconds,
        epochSeconds: this.d.epochSeconds(),
        nonce: m.nonce,
        protocol: m.protocol,
        internalPort: m.internalPort,
        assignedExternalPort: externalPort,
        assignedExternalAddress: this.d.publicAddress(source) ?? (source.includes(':') ? '::' : '0.0.0.0'),
      })
    }
    if (req.lifetimeSeconds === 0) {
      // Delete (§15): protocol 0 + port 0 removes all of the client's mappings.
      const protocols: Protocol[] = m.protocol === 0 ? ['tcp', 'udp'] : [protocolOf(m.protocol)].filter((p): p is Protocol => p !== null)
      if (protocols.length === 0) return refuse(PcpResult.UnsuppProtocol)
      const r = await this.d.forwarder.delete({ client: source, protocols, internalPort: m.internalPort, nonce, via: 'pcp' })
      if (!r.ok) return refuse(pcpResultFor(r.refusal))
      return answer(m.internalPort === 0 ? 0 : (r.removed[0]?.externalPort ?? 0), 0)
    }
    const protocol = protocolOf(m.protocol)
    if (protocol === null) return refuse(PcpResult.UnsuppProtocol)
    if (m.internalPort === 0) return refuse(PcpResult.MalformedRequest) // §11.1: "all ports" only for protocol 0 or delete
    const pub = this.d.publicAddress(source)
    if (pub === null) return refuse(PcpResult.NetworkFailure)
    const suggestedAddr = m.suggestedExternalAddress
    const wantsOtherAddress = suggestedAddr !== '0.0.0.0' && suggestedAddr !== '::' && suggestedAddr !== pub
    if (req.preferFailure && wantsOtherAddress) return refuse(PcpResult.CannotProvideExternal)
    // A client whose own IPv6 address is global gets a pinhole: its port, at its address (§11.3 allows
    // the server to assign a different port only when it translates; a pinhole does not).
    const pinhole = pub === source
    if (pinhole && req.preferFailure && m.suggestedExternalPort !== 0 && m.suggestedExternalPort !== m.internalPort)
      return refuse(PcpResult.CannotProvideExternal)
    const r = await this.d.forwarder.map({
      client: source,
      protocol,
      internalPort: m.internalPort,
      suggestedExternalPort: m.suggestedExternalPort,
      lifetimeSeconds: req.lifetimeSeconds,
      origin: 'pcp',
      nonce,
      exactPort: req.preferFailure && m.suggestedExternalPort !== 0 && !pinhole,
      pinhole,
    })
    return r.ok ? answer(r.lease.externalPort, r.lease.lifetimeSeconds) : refuse(pcpResultFor(r.refusal))
  }
}
