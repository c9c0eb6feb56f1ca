/** WgpmpError: every failure outside packet decoding carries a stable code. */

/** What failed. Each code is thrown somewhere, and names the failure, not the component that saw it. */
export type ErrorCode =
  /** config.json (or an API body) does not pass the schema or a cross-field check. */
  | 'WGPMP_CONFIG_INVALID'
  /** A static forward spec does not parse or collides. */
  | 'WGPMP_FORWARD_INVALID'
  /** The kernel holds no forward under that key (delete of a missing one), any driver. */
  | 'WGPMP_FORWARD_MISSING'
  /** The kernel holds a forward under that key already (add of an existing one), any driver. */
  | 'WGPMP_FORWARD_EXISTS'
  /** nft, libnftables or iptables-restore refused a batch or a base install. */
  | 'WGPMP_KERNEL_REFUSED'
  /** The kernel holds a rule in our chains that wgpmp would not have written. */
  | 'WGPMP_KERNEL_UNEXPECTED'
  /** nft/wgpmp.nft is not installed next to the program. */
  | 'WGPMP_RULESET_MISSING'
  /** A program (nft, iptables, wg, conntrack) is not installed. */
  | 'WGPMP_EXEC_MISSING'
  /** A program or library could not be started or loaded. */
  | 'WGPMP_EXEC_FAILED'
  /** `wg show` failed (interface missing, no permission) or printed something unparsable. */
  | 'WGPMP_WG_FAILED'
  /** An address wgpmp needs (public, WireGuard) is not on the interface, or cannot be bound. */
  | 'WGPMP_ADDRESS_UNKNOWN'
  /** The state file cannot be read, written or trusted. */
  | 'WGPMP_STATE_INVALID'
  /** The CLI cannot reach the daemon's API. */
  | 'WGPMP_API_UNREACHABLE'
  /** The daemon's API answered with an error. */
  | 'WGPMP_API_REFUSED'

export class WgpmpError extends Error {
  override readonly name = 'WgpmpError'
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options)
  }
}

export const isWgpmpError = (e: unknown, code?: ErrorCode): e is WgpmpError => e instanceof WgpmpError && (code === undefined || e.code === code)
