/** NAT-PMP (RFC 6886) and PCP (RFC 6887) numbers. No other file in src/ holds a bare 5351 or 0x80. */

/** The server port for NAT-PMP and PCP (RFC 6886 §3.1, RFC 6887 §19.1). */
export const NATPMP_PORT = 5351
/** Clients listen here for address-change announcements (RFC 6886 §3.2.1). */
export const NATPMP_CLIENT_PORT = 5350
export const NATPMP_VERSION = 0
export const PCP_VERSION = 2
/** OR'd into the request opcode in every response (RFC 6886 §3). */
export const RESPONSE_BIT = 0x80

/** RFC 6886 §3.2, §3.3. */
export const Opcode = { PublicAddress: 0, MapUdp: 1, MapTcp: 2 } as const
export type Opcode = (typeof Opcode)[keyof typeof Opcode]

/** RFC 6886 §3.5. */
export const ResultCode = {
  Success: 0,
  UnsupportedVersion: 1,
  NotAuthorized: 2,
  NetworkFailure: 3,
  OutOfResources: 4,
  UnsupportedOpcode: 5,
} as const
export type ResultCode = (typeof ResultCode)[keyof typeof ResultCode]

/** Packet lengths (RFC 6886 §3.2, §3.3, §3.5). */
export const Len = {
  Header: 2,
  PublicAddressRequest: 2,
  MapRequest: 12,
  PublicAddressResponse: 12,
  MapResponse: 16,
  /** An error reply to a request we could not parse (version or opcode): version, op, result, epoch. */
  ErrorResponse: 8,
  /** Largest datagram we read; PCP requests are at most 1100 bytes (RFC 6887 §7). */
  MaxDatagram: 1100,
} as const
