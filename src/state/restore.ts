/**
 * Restore checks (issue 10 §4): a saved lease belongs to the peer (public key) it was granted to,
 * not to whoever holds its address now. Pure.
 */

/** Why a saved lease or hold of `client` may not be restored now, or null when it may. */
export function identityRefusal(
  saved: { readonly client: string; readonly peer?: string },
  peerAt: (address: string) => { readonly id: string } | undefined,
): 'no-peer' | 'other-peer' | null {
  const now = peerAt(saved.client)
  if (!now) return 'no-peer'
  // Files written before issue 10 carry no peer: the address alone decides, as it did then.
  if (saved.peer !== undefined && saved.peer !== now.id) return 'other-peer'
  return null
}

/** Log text for each refusal reason (the daemon's "saved leases not restored" line). */
export const RESTORE_REASONS: Record<string, string> = {
  'no-peer': 'no peer has this address now',
  'other-peer': 'the address now belongs to another peer (public key)',
  'out-of-range': 'outside port_forward_min_port..port_forward_max_port',
  reserved: 'the port is reserved now (reserved_ports, the WireGuard or API port, or the host listens on it)',
  taken: 'the port is taken (a static forward or another lease)',
  duplicate: 'a second lease for the same client, protocol and internal port',
  'bad-client': 'not an address',
}
