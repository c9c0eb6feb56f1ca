/** WgpmpError: every failure outside packet decoding carries a stable code. */

export type ErrorCode =
  | 'WGPMP_CONFIG_INVALID'
  | 'WGPMP_PORTS_EXHAUSTED'
  | 'WGPMP_PEER_UNKNOWN'
  | 'WGPMP_PORT_TAKEN'
  | 'WGPMP_LIMIT'
  | 'WGPMP_NOT_FOUND'
  | 'WGPMP_NFT_NOT_FOUND'
  | 'WGPMP_NFT_EXISTS'
  | 'WGPMP_NFT_FAILED'
  | 'WGPMP_IPTABLES_FAILED'
  | 'WGPMP_FORWARD_INVALID'
  | 'WGPMP_EXEC_MISSING'
  | 'WGPMP_ADDRESS_UNKNOWN'
  | 'WGPMP_STATE_INVALID'

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

export const isWgpmpError = (e: unknown, code?: ErrorCode): e is WgpmpError =>
  e instanceof WgpmpError && (code === undefined || e.code === code)
