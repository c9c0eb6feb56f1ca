/**
 * NatPmpService: one request in, one reply out. Decodes, checks the sender, changes the lease
 * table, commits the implied forwards to the kernel, and only then encodes the answer.
 */
import { Opcode, ResultCode, type ResultCode as Result } from '../protocol/constants.js'
import { decodeRequest, encodeErrorReply, encodeMapResponse, encodePublicAddressResponse, type MapOpcode } from '../protocol/natpmp.js'
import type { Protocol } from '../drivers/driver.js'
import type { Logger } from '../log.js'
import { natpmpResultFor, type Lease, type MappingTable, type Removal } from '../mappings/table.js'
import type { LeaseEvents } from '../notify/emit.js'

export interface ServiceDeps {
  table: MappingTable
  /** Commits changes to the kernel (group commit); rejects if refused. */
  commit: (changes: Removal['changes']) => Promise<void>
  /** Seconds since the mapping table started (RFC 6886 §3.6). */
  epochSeconds: () => number
  /**
   * The external address for a client: the public IPv4 address for an IPv4 client, the public
   * IPv6 address for a unique-local IPv6 client (NAT66), the client's own for a global one
   * (pinhole); null if unknown (result 3 / NETWORK_FAILURE).
   */
  publicAddress: (client: string) => string | null
  /** May this source address use NAT-PMP? (a peer's tunnel address inside the WireGuard prefix) */
  isClient: (address: string) => boolean | Promise<boolean>
  /** Called after the table changed (arms the expiry timer). */
  changed: () => void
  log: Logger
  /** Counts each answered request by opcode and result. */
  count?: (op: number, result: number) => void
  /**
   * Commits of new leases still in flight (shared by NAT-PMP and PCP): a retransmit or renewal of
   * a lease whose forward is not in the kernel yet waits for it, so no reply ever precedes its rule.
   */
  inflight: Map<Lease, Promise<void>>
  /**
   * Each client's deletes run one after another: a retransmitted delete (or a second delete-all)
   * finds the table already emptied, and must not be answered before the first one's commit.
   */
  removals: Map<string, Promise<void>>
  /** Leases per batch in a large removal (see removeInChunks). */
  chunk: number
  /** Operator notifications (issue 13): one helper call per change, never throws. */
  notify?: LeaseEvents
  /** The client's id and name for log lines (issue 13). */
  who?: (address: string) => { clientId?: string | undefined; clientName?: string | null | undefined }
}

/**
 * A large removal (a client's delete-all, a removed peer, a flush) in rounds of `d.chunk`: each
 * round takes its leases out of the table and commits their deletes before the next round frees
 * any more ports. So a port is never handed to someone else while its old forward is still in
 * the kernel, and requests arriving meanwhile wait for one round, not for all of them. If a round
 * is refused, it is undone and this rejects: the rounds before it stay done (table and kernel
 * agree), the rest stay mapped. Resolves with every lease removed.
 */
export async function removeInChunks(d: Pick<ServiceDeps, 'commit' | 'chunk'>, take: (limit: number) => Removal): Promise<Lease[]> {
  const removed: Lease[] = []
  // Bounded: every round that continues removed a full chunk, and the table is finite.
  for (;;) {
    const r = take(d.chunk)
    if (r.removed.length === 0) return removed
    try {
      await d.commit(r.changes)
    } catch (err) {
      r.undo()
      throw err
    }
    removed.push(...r.removed)
    if (r.removed.length < d.chunk) return removed
  }
}

/** Runs a client's delete after any delete of that client still in flight (see ServiceDeps.removals). */
export async function serialRemoval<T>(d: Pick<ServiceDeps, 'removals'>, client: string, run: () => Promise<T>): Promise<T> {
  const prev = d.removals.get(client) ?? Promise.resolve()
  const mine = prev.then(run)
  const settled = mine.then(() => {}, () => {})
  d.removals.set(client, settled)
  try {
    return await mine
  } finally {
    if (d.removals.get(client) === settled) d.removals.delete(client)
  }
}

/**
 * Commits the changes of a table outcome; a new lease is registered in `inflight` meanwhile, and a
 * renewal (no changes) waits for its lease's commit if that is still running. Rejects if refused.
 */
export async function commitOutcome(d: Pick<ServiceDeps, 'commit' | 'inflight'>, lease: Lease, changes: Removal['changes']): Promise<void> {
  if (changes.length === 0) {
    await d.inflight.get(lease)
    return
  }
  const p = d.commit(changes)
  d.inflight.set(lease, p)
  try {
    await p
  } finally {
    d.inflight.delete(lease)
  }
}

const protocolOf = (op: MapOpcode): Protocol => (op === Opcode.MapUdp ? 'udp' : 'tcp')

export class NatPmpService {
  constructor(private readonly d: ServiceDeps) {}

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
      const result = !(await this.d.isClient(source)) ? ResultCode.NotAuthorized : pub ? ResultCode.Success : ResultCode.NetworkFailure
      this.d.count?.(req.op, result)
      return encodePublicAddressResponse(result, epoch, pub)
    }
    const reply = (result: Result, externalPort = 0, lifetimeSeconds = 0): Uint8Array => {
      this.d.count?.(req.op, result)
      return encodeMapResponse({ op: req.op, result, internalPort: req.internalPort, externalPort, lifetimeSeconds }, this.d.epochSeconds())
    }
    if (!(await this.d.isClient(source))) {
      this.d.log.info({ source, op: req.op }, 'natpmp: refused, not a client')
      return reply(ResultCode.NotAuthorized)
    }
    const protocol = protocolOf(req.op)
    try {
      if (req.lifetimeSeconds === 0) {
        return await serialRemoval(this.d, source, async () => {
          // RFC 6886 §3.4: the suggested external port is ignored; internal 0 deletes all of this protocol.
          let removed: Lease[]
          try {
            removed = await removeInChunks(this.d, (limit) => this.d.table.remove(source, protocol, req.internalPort, limit))
          } catch (err) {
            this.d.log.error({ err, source, protocol, internalPort: req.internalPort }, 'natpmp: delete refused by the kernel')
            this.d.changed()
            return reply(ResultCode.NetworkFailure)
          }
          this.d.notify?.removed(removed, 'deleted')
          if (removed.length > 0) this.d.log.info({ client: source, ...this.d.who?.(source), protocol, internalPort: req.internalPort, forwards: removed.slice(0, 20).map((l) => l.externalPort), count: removed.length }, 'lease deleted')
          this.d.changed()
          return reply(ResultCode.Success)
        })
      }
      const out = this.d.table.map({
        client: source,
        protocol,
        internalPort: req.internalPort,
        suggestedExternalPort: req.suggestedExternalPort,
        lifetimeSeconds: req.lifetimeSeconds,
      })
      if (!out.ok) {
        this.d.log.info({ client: source, ...this.d.who?.(source), protocol, internalPort: req.internalPort, reason: out.reason }, 'natpmp: map refused')
        return reply(natpmpResultFor(out.reason))
      }
      try {
        await commitOutcome(this.d, out.lease, out.changes)
      } catch (err) {
        out.undo()
        this.d.notify?.refused(out.lease, out.changes)
        this.d.log.error({ err, client: source, ...this.d.who?.(source), protocol, externalPort: out.lease.externalPort }, 'natpmp: forward refused by the kernel')
        return reply(ResultCode.NetworkFailure)
      }
      const l = out.lease
      this.d.notify?.created(l, out.changes)
      this.d.log[out.changes.length === 0 ? 'debug' : 'info']( // renewals at debug
        { client: source, ...this.d.who?.(source), protocol, externalPort: l.externalPort, internalPort: l.targetPort, lifetimeSeconds: l.lifetimeSeconds, renewal: out.changes.length === 0 },
        out.changes.length === 0 ? 'lease renewed' : 'lease created',
      )
      this.d.changed()
      return reply(ResultCode.Success, l.externalPort, l.lifetimeSeconds)
    } catch (err) {
      // A bug, not bad input: answer 3 rather than leave the client retrying for two minutes.
      this.d.log.error({ err, source }, 'natpmp: internal error')
      return reply(ResultCode.NetworkFailure)
    }
  }
}
