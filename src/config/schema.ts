/** The config file's JSON schema: the only source of the Config type (json-schema-to-ts). */
import type { FromSchema, JSONSchema } from 'json-schema-to-ts'
import { apiConfigProperties, HOST_PORT_PATTERN } from './schema-api.js'
import { notificationsConfigProperties } from './notifications.js'

const port = { type: 'integer', minimum: 1, maximum: 65535 } as const
const ifname = { type: 'string', minLength: 1, maxLength: 15, pattern: '^[A-Za-z0-9_.:@-]+$' } as const

export const configSchema = {
  $id: 'https://wgpmp.invalid/config.schema.json',
  title: 'wgpmp configuration',
  type: 'object',
  additionalProperties: false,
  properties: {
    port_forward_enabled: {
      type: 'boolean',
      default: false,
      description: 'Master switch. false: the daemon says so and exits 0 without touching nftables.',
    },
    port_forward_min_port: { ...port, default: 1024, description: 'Lowest external port that may be granted.' },
    port_forward_max_port: { ...port, default: 65535, description: 'Highest external port that may be granted.' },
    wg_interface: { ...ifname, default: 'wg0', description: 'The WireGuard interface NAT-PMP is answered on.' },
    wg_address_v4: {
      type: 'string',
      format: 'cidr4',
      default: '10.8.0.1/24',
      description: 'The server\'s WireGuard address with prefix, e.g. "10.8.0.1/24": NAT-PMP listens on it; only clients inside the prefix are served.',
    },
    wg_address_v6: {
      type: 'string',
      format: 'cidr6',
      description:
        'The server\'s WireGuard IPv6 address with prefix, e.g. "fd42:42::1/64". Set it to enable IPv6: PCP is answered on it (port 5351), clients with unique-local addresses get forwards from public_address_v6 (NAT66), clients with global addresses get pinholes. Needs the nft driver.',
    },
    public_interface: { ...ifname, default: 'eth0', description: 'Where forwarded traffic arrives.' },
    public_address_v4: {
      type: 'string',
      format: 'ipv4',
      description:
        'The address NAT-PMP, PCP and UPnP report and forwards are for. Default: the first IPv4 address of public_interface. When it is not an address of this host (1:1 NAT, a Docker bridge), forwards also match the addresses of public_interface, where the upstream NAT delivers them.',
    },
    ipv6_guarded_prefixes: {
      type: 'array',
      items: { type: 'string', format: 'cidr6' },
      uniqueItems: true,
      default: [],
      description:
        'Global IPv6 prefixes routed to clients (e.g. ["2001:db8:200::/64"]) that wgpmp firewalls: new connections from outside the tunnel reach them only through PCP pinholes and static forwards, like a home router. Empty: wgpmp drops nothing and pinholes only matter to a firewall of your own.',
    },
    public_address_v6: {
      type: 'string',
      format: 'ipv6',
      description: 'The IPv6 address IPv6 forwards (NAT66) are for and PCP reports. Default: the first global IPv6 address of public_interface.',
    },
    port_forward_driver: { enum: ['nft', 'iptables'], default: 'nft', description: 'How forwards reach the kernel.' },
    nft_mode: {
      enum: ['library', 'session', 'spawn'],
      default: 'library',
      description:
        'library: libnftables in the daemon (through koffi), no process per batch; session: one long-lived `nft -j -i` carries every batch; spawn: one `nft -j -f` per batch. Each falls back to the next if it cannot run (logged at start).',
    },
    pcp_enabled: {
      type: 'boolean',
      default: true,
      description:
        'Answer PCP (RFC 6887, version 2) on the same port. false: every version but 0 gets the NAT-PMP "unsupported version" reply, so PCP clients fall back to NAT-PMP.',
    },
    lifetime_min_seconds: {
      type: 'integer',
      minimum: 1,
      default: 120,
      description: 'Shortest lifetime granted: requests below are raised to it (a 60 s ProtonVPN-style loop gets 120).',
    },
    lifetime_max_seconds: {
      type: 'integer',
      minimum: 1,
      maximum: 31536000,
      default: 7200,
      description: 'Longest lifetime granted (RFC 6886 recommends 7200): a client asking 3,600,000 s gets this.',
    },
    max_forwards_per_client: {
      type: 'integer',
      minimum: 1,
      default: 128,
      description: 'NAT-PMP mappings one client may hold; beyond it the answer is result 4 (out of resources).',
    },
    rate_limit_per_second: {
      type: 'integer',
      minimum: 1,
      default: 20,
      description:
        'Requests per second one client may send (token bucket); excess is dropped without a reply and counted. A ProtonVPN loop sends 4 per 45 s; retransmits at 250 ms doubling stay far below.',
    },
    rate_limit_burst: {
      type: 'integer',
      minimum: 1,
      default: 40,
      description: 'Requests a client may send at once before the per-second limit applies (10 mappings with retransmits fit).',
    },
    reserved_ports: {
      type: 'array',
      items: port,
      uniqueItems: true,
      default: [],
      description:
        'External ports never granted, in addition to the WireGuard listen port, the API port and every port the host listens on when a request arrives.',
    },
    teardown_on_exit: {
      type: 'boolean',
      default: true,
      description: 'On SIGTERM/SIGINT remove every forward and the table.',
    },
    // --- install (issue 12): wg-easy v15 names ---
    wg_config_file: {
      type: 'string',
      minLength: 1,
      description:
        "The WireGuard config file whose `# Client: <name> (<id>)` comments (wg-easy v15 writes one above each [Peer]) name the clients; re-read when it changes. Default /etc/wireguard/<wg_interface>.conf. wg-easy v14's /etc/wireguard/wg0.json is read too.",
    },
    // --- install (issue 12): host firewall ---
    host_firewall_accept: {
      type: 'boolean',
      default: false,
      description:
        "When a forward base chain of another table (ufw's or Docker's FORWARD policy DROP, an nftables forward chain) drops forwarded traffic, insert `iptables -I FORWARD -m conntrack --ctstate DNAT -j ACCEPT` (or `ct status dnat accept` in that nft chain) at its top, and remove exactly that rule on exit. false: only warn (log, page, metric wgpmp_host_firewall_blocks_forwards).",
    },
    // UPnP IGD front-end (src/frontends/upnp/)
    upnp_enabled: {
      type: 'boolean',
      default: true,
      description:
        'Answer UPnP IGD on the WireGuard IPv4 address: SSDP searches (UDP 1900) and HTTP/SOAP control (upnp_http_port), for clients only. false: neither socket opens.',
    },
    upnp_http_port: {
      ...port,
      default: 2869,
      description: 'TCP port of the UPnP description and control server on the WireGuard address (2869: the port Windows uses for UPnP).',
    },
    upnp_permanent_lease_seconds: {
      type: 'integer',
      minimum: 120,
      maximum: 31536000,
      default: 604800,
      description:
        'A UPnP mapping asked for with NewLeaseDuration 0 ("permanent", what Transmission sends) lasts this long unless the client re-adds it, and no UPnP lease is granted longer (IGD:2 says 604800). It also ends when the peer disconnects or is removed.',
    },
    log_level: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info' },
    // --- issue 10 §3 ---
    port_hold_seconds: {
      type: 'integer',
      minimum: 0,
      maximum: 31536000,
      default: 86400,
      description:
        'When a NAT-PMP/PCP lease lapses or is deleted, its external port stays held for its client this long (across restarts): the client gets the same port back on its next request for the same internal port, whatever it suggests, unless a static forward took it. Another client gets a held port only when no other port in range is free. 0: no holding.',
    },
    metrics_listen: {
      type: 'string',
      pattern: HOST_PORT_PATTERN,
      description:
        'Opt-in: "host:port" of a second HTTP listener serving only /metrics, without the API token (e.g. "10.8.0.1:9352" or "127.0.0.1:9352"). Unset: /metrics is on the API, behind the token.',
    },
    log_format: {
      enum: ['auto', 'json', 'pretty'],
      default: 'auto',
      description:
        'json: one JSON object per line (for journald, Loki, jq); pretty: one readable line per record; auto: pretty on a terminal, else json. --log-format wins.',
    },
    ...apiConfigProperties,
    ...notificationsConfigProperties, // issue 13
  },
} as const satisfies JSONSchema

export type Config = FromSchema<typeof configSchema>
export type ConfigInput = FromSchema<typeof configSchema, { keepDefaultedPropertiesOptional: true }>
