/**
 * UpnpBackend: everything the UPnP IGD front-end needs from the rest of the daemon, and nothing
 * more. The front-end (SSDP, HTTP, SOAP, the action logic in service.ts) depends only on this
 * interface; forwarder-backend.ts implements it on the forwarder, the one place leases change.
 *
 * UPnP names a mapping by (protocol, external port) on the one public address; every call here is
 * scoped to one client (the requester's tunnel address), so a client can only ever see, renew or
 * delete its own mappings.
 */

export type UpnpProtocol = 'tcp' | 'udp'

/** One of a client's mappings as UPnP shows it. */
export interface UpnpMapping {
  readonly protocol: UpnpProtocol
  readonly externalPort: number
  /** Always the requesting client's own tunnel address. */
  readonly internalClient: string
  readonly internalPort: number
  /** NewPortMappingDescription as stored (already capped and cleaned); '' if none. */
  readonly description: string
  /** Whole seconds left (never 0 for a live mapping: at least 1). */
  readonly secondsLeft: number
}

export interface UpnpAddRequest {
  /** The requester's tunnel address (the mapping's internal client). */
  readonly client: string
  readonly protocol: UpnpProtocol
  /** The port asked for; for a non-exact request a hint (0: any). */
  readonly externalPort: number
  readonly internalPort: number
  /** Seconds asked for; 0 = "permanent" (the backend stores its documented cap). */
  readonly leaseSeconds: number
  readonly description: string
  /**
   * true (AddPortMapping): exactly externalPort or a refusal; an existing mapping of this client
   * for the same internal port, or on the same external port, is moved onto the new one.
   * false (AddAnyPortMapping): externalPort if free, else any free port; an existing mapping of
   * this client for the same internal port is renewed where it is.
   */
  readonly exact: boolean
}

/**
 * Why an add was refused:
 * - port-taken: another client (or a static forward) holds that external port;
 * - port-unavailable: outside the granted range, or reserved (SSH, the WireGuard port, a port the host listens on);
 * - no-ports: no free port at all (non-exact only);
 * - client-limit: the client holds max_forwards_per_client already;
 * - not-a-client: the address is not a configured, connected peer inside the WireGuard prefix;
 * - kernel-refused: the forward could not be committed (nothing changed).
 */
export type UpnpRefusal = 'port-taken' | 'port-unavailable' | 'no-ports' | 'client-limit' | 'not-a-client' | 'kernel-refused'

export type UpnpAddResult =
  { readonly ok: true; readonly externalPort: number; readonly leaseSeconds: number } | { readonly ok: false; readonly refusal: UpnpRefusal }

export interface UpnpBackend {
  /** Is this source address a peer of the WireGuard interface (inside the prefix, configured)? */
  isClient(address: string): Promise<boolean>
  /** The public IPv4 address UPnP reports (GetExternalIPAddress); '' if unknown. */
  publicAddress(): string
  add(req: UpnpAddRequest): Promise<UpnpAddResult>
  /** Deletes the client's own mapping on (protocol, externalPort); another client's is 'not-found'. */
  remove(client: string, protocol: UpnpProtocol, externalPort: number): Promise<'ok' | 'not-found' | 'kernel-refused'>
  /** Deletes the client's own mappings of protocol in [start, end]; resolves with how many (0: none there). */
  removeRange(
    client: string,
    protocol: UpnpProtocol,
    start: number,
    end: number,
  ): Promise<{ ok: true; removed: number } | { ok: false; refusal: 'kernel-refused' }>
  /** The client's own mappings (NAT-PMP, PCP and UPnP leases alike), by external port then protocol. */
  list(client: string): readonly UpnpMapping[]
  /** The client's own mapping on (protocol, externalPort), or undefined. */
  get(client: string, protocol: UpnpProtocol, externalPort: number): UpnpMapping | undefined
}

/** NewPortMappingDescription is stored with at most this many characters. */
export const DESCRIPTION_MAX = 64

/**
 * A client-controlled description made safe to store and show: control characters removed (as
 * miniupnpd 2.3.11 strips non-printables from its lease file), whitespace trimmed, capped at
 * DESCRIPTION_MAX code points. HTML escaping is the page's job; XML escaping the SOAP encoder's.
 */
export function cleanDescription(text: string): string {
  // eslint-disable-next-line no-control-regex
  const printable = text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\ufeff]/g, '').trim()
  return Array.from(printable).slice(0, DESCRIPTION_MAX).join('')
}
