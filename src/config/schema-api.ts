/**
 * Config keys for clients, static forwards and the HTTP API (issue 4), as JSON-schema properties
 * that config/schema.ts spreads into configSchema.properties. Defaults are filled by ajv (useDefaults).
 */
import type { JSONSchema } from 'json-schema-to-ts'
import { staticForwardBodySchema } from '../mappings/static.js'
import { DEFAULT_PEER_DISCONNECT_SECONDS, MIN_PEER_DISCONNECT_SECONDS } from '../wireguard/peers.js'

/**
 * Default API port: 5352, next to NAT-PMP's 5351 so it is easy to remember, and on loopback only.
 * Not 5351 (NAT-PMP/PCP server, RFC 6886/6887) or 5350 (NAT-PMP address announcements): wgpmp
 * uses those itself, and reusing them even on TCP would confuse firewalls and readers of `ss`.
 * IANA lists 5352 as dns-llq (Apple's long-lived DNS queries), which nothing runs on a WireGuard
 * gateway's loopback; 51821 (wg-easy's UI) and 5353 (mDNS, often avahi) are avoided.
 */
export const DEFAULT_API_PORT = 5352
export const DEFAULT_API_LISTEN = `127.0.0.1:${DEFAULT_API_PORT}`

/** "host:port" with an IPv4 address or a bracketed IPv6 address; port 0 = any (tests). */
export const HOST_PORT_PATTERN = '^(([0-9]{1,3}\\.){3}[0-9]{1,3}|\\[[0-9A-Fa-f:.]+\\]):[0-9]{1,5}$'

export const apiConfigProperties = {
  api_listen: {
    type: 'string',
    pattern: HOST_PORT_PATTERN,
    default: DEFAULT_API_LISTEN,
    description: `Where the HTTP API and page listen, "host:port" ("[::1]:${DEFAULT_API_PORT}" for IPv6). Loopback by default: reach it through an SSH tunnel or a reverse proxy; binding a public address exposes it to the internet.`,
  },
  api_token_file: {
    type: 'string',
    minLength: 1,
    description:
      'File holding the API bearer token (first line, surrounding whitespace trimmed; keep it mode 0600). Without it the API and page are off and the daemon logs that.',
  },
  state_file: {
    type: 'string',
    minLength: 1,
    default: '/var/lib/wgpmp/state.json',
    description: 'Where API-created static forwards are stored (written atomically: temp file, fsync, rename).',
  },
  peer_disconnect_seconds: {
    type: 'integer',
    minimum: 5,
    maximum: 86400,
    default: DEFAULT_PEER_DISCONNECT_SECONDS,
    description: `A peer with no handshake for longer than this is disconnected: its NAT-PMP forwards are removed, static ones stay. Default ${DEFAULT_PEER_DISCONNECT_SECONDS} = WireGuard's REJECT_AFTER_TIME (180 s, after which its keys are dead) + REKEY_AFTER_TIME (120 s, one missed rekey). Below ${MIN_PEER_DISCONNECT_SECONDS} a live peer between two handshakes looks disconnected: only for tests.`,
  },
  peer_refresh_seconds: {
    type: 'integer',
    minimum: 1,
    maximum: 60,
    default: 2,
    description:
      'How often `wg show <wg_interface> dump` is read. Removed peers lose their forwards within this plus one batch; keep it <= 4 for the 5-second promise.',
  },
  clients: {
    type: 'object',
    default: {},
    propertyNames: { minLength: 1, maxLength: 64 },
    additionalProperties: {
      type: 'object',
      additionalProperties: false,
      properties: { name: { type: 'string', minLength: 1, maxLength: 64, description: 'Display name on the page and in the API.' } },
    },
    description:
      'Per-client settings keyed by WireGuard public key or client id. Names here win over the wg-easy client list (/etc/wireguard/wg0.json), which is read when present.',
  },
  static_forwards: {
    type: 'object',
    default: {},
    propertyNames: { minLength: 1, maxLength: 64 },
    additionalProperties: {
      type: 'array',
      items: { oneOf: [{ type: 'string', minLength: 1, maxLength: 32 }, staticForwardBodySchema] },
    },
    description:
      'Static forwards keyed by client public key or id: ["8080:80/tcp", "27015-27030/udp", {"protocol":"both","external_port":443}]. They never expire, NAT-PMP cannot take their ports, and the API cannot delete them.',
  },
} as const satisfies Record<string, JSONSchema>

/** Splits "127.0.0.1:5352" / "[::1]:5352" into host and port; null if malformed. */
export function parseHostPort(s: string): { host: string; port: number } | null {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+)):([0-9]{1,5})$/.exec(s)
  if (!m) return null
  const port = Number(m[3])
  if (port > 65535) return null
  return { host: m[1] ?? m[2]!, port }
}
