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

// ---------------------------------------------------------------------------------------------
// PCP (RFC 6887). Added for src/protocol/pcp.ts; PCP_VERSION, NATPMP_PORT (server port 5351,
// §19.1), NATPMP_CLIENT_PORT (announce port 5350, §14.1.3) and RESPONSE_BIT (the R bit, §7.1/§7.2)
// above are shared with NAT-PMP.
// ---------------------------------------------------------------------------------------------

/** Masks the 7-bit opcode out of the R|Opcode octet (RFC 6887 §7.1). */
export const PCP_OPCODE_MASK = 0x7f

/** PCP opcodes (RFC 6887 §7.1, IANA registry §19.2): ANNOUNCE §14.1, MAP §11, PEER §12. */
export const PcpOpcode = { Announce: 0, Map: 1, Peer: 2 } as const
export type PcpOpcode = (typeof PcpOpcode)[keyof typeof PcpOpcode]

/** PCP result codes (RFC 6887 §7.4). */
export const PcpResult = {
  Success: 0,
  UnsuppVersion: 1,
  NotAuthorized: 2,
  MalformedRequest: 3,
  UnsuppOpcode: 4,
  UnsuppOption: 5,
  MalformedOption: 6,
  NetworkFailure: 7,
  NoResources: 8,
  UnsuppProtocol: 9,
  UserExQuota: 10,
  CannotProvideExternal: 11,
  AddressMismatch: 12,
  ExcessiveRemotePeers: 13,
} as const
export type PcpResult = (typeof PcpResult)[keyof typeof PcpResult]

/**
 * Result codes RFC 6887 §7.4 calls "short lifetime" errors (the condition may clear soon).
 * Every other non-zero code is a "long lifetime" error.
 */
export const PCP_SHORT_LIFETIME_RESULTS: ReadonlySet<number> = new Set([
  PcpResult.NetworkFailure,
  PcpResult.NoResources,
  PcpResult.UserExQuota,
  PcpResult.CannotProvideExternal,
])

/**
 * Lifetime (seconds) we put in error responses (RFC 6887 §7.2: how long the client should assume
 * it will get the same error). The values are wgpmp's choice: 30 s for short errors (as
 * miniupnpd), 30 min for long ones (miniupnpd sends 0, which invites an immediate retry).
 */
export const PcpErrorLifetime = { Short: 30, Long: 1800 } as const

/** PCP option codes (RFC 6887 §7.3, §13, IANA registry §19.3). */
export const PcpOptionCode = { ThirdParty: 1, PreferFailure: 2, Filter: 3 } as const
export type PcpOptionCode = (typeof PcpOptionCode)[keyof typeof PcpOptionCode]

/** Option codes 128-255 are optional to process; 0-127 are mandatory (RFC 6887 §7.3). */
export const PCP_OPTION_OPTIONAL_MIN = 0x80

/** PCP field and packet sizes in octets (RFC 6887 §7, §11.1, §12.1, §13). */
export const PcpLen = {
  /** Request and response common header (§7.1, §7.2). */
  Header: 24,
  /** Largest PCP message; longer requests are malformed and replies copy at most this (§7, §8.3). */
  MaxMessage: 1100,
  /** Every PCP message, and every option's padded length, is a multiple of this (§7, §7.3). */
  Alignment: 4,
  /** An IPv6 or IPv4-mapped address field (§5). */
  Address: 16,
  /** Mapping nonce (§11.1). */
  Nonce: 12,
  /** MAP opcode-specific data, request and response (§11.1, §11.2). */
  MapBody: 36,
  /** PEER opcode-specific data, request and response (§12.1, §12.2). */
  PeerBody: 56,
  /** Option header: code, reserved, length (§7.3). */
  OptionHeader: 4,
  /** THIRD_PARTY option data: one address (§13.1). */
  ThirdPartyData: 16,
  /** PREFER_FAILURE option data: none (§13.2). */
  PreferFailureData: 0,
  /** FILTER option data: reserved, prefix length, remote peer port, remote peer address (§13.3). */
  FilterData: 20,
} as const

/** Largest FILTER prefix length: the whole 128-bit address (RFC 6887 §13.3). */
export const PCP_FILTER_MAX_PREFIX = 128
