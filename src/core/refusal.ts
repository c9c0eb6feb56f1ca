/**
 * Refusal: why the forwarder did not do what a front-end asked, in one vocabulary for every
 * front-end. Each front-end turns it into its own protocol's answer in one function (NAT-PMP
 * result codes, PCP result codes, UPnP error codes); nothing else chooses an answer.
 */
export type Refusal =
  /** The sender is not a peer's tunnel address on the WireGuard interface. */
  | 'not-a-client'
  /** The client address does not parse. */
  | 'bad-client'
  /** Every port of the range is taken. */
  | 'no-ports'
  /** The client holds max_forwards_per_client already. */
  | 'client-limit'
  /** Only one port would do (PCP PREFER_FAILURE, UPnP AddPortMapping) and it is not free. */
  | 'port-unavailable'
  /** A PCP renewal or delete with another mapping nonce (RFC 6887 §11.3). */
  | 'nonce-mismatch'
  /** The kernel refused the change; the table was rolled back. */
  | 'kernel-refused'
  /** A bug: logged with its stack; the client gets its protocol's generic failure. */
  | 'internal-error'

/** The refusals the lease table itself decides (the rest come from admission and the kernel). */
export type TableRefusal = Extract<Refusal, 'bad-client' | 'no-ports' | 'client-limit' | 'port-unavailable' | 'nonce-mismatch'>
