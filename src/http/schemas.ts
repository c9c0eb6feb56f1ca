/**
 * JSON schemas of the HTTP API's requests and responses: ajv validates requests with them,
 * json-schema-to-ts derives the TypeScript types from them, and
 * apiSchemas is what the docs print (it is not served: the routes are exactly those of issue 4).
 */
import type { FromSchema, JSONSchema } from 'json-schema-to-ts'
import { ORIGINS } from '../core/forward.js'
import { staticForwardBodySchema } from '../mappings/static.js'

const portOrRange = { oneOf: [{ type: 'integer' }, { type: 'string' }] } as const
const nullable = <T extends JSONSchema>(s: T) => ({ anyOf: [s, { type: 'null' }] }) as const

export const forwardViewSchema = {
  type: 'object',
  additionalProperties: false,
  required: [
    'id',
    'client_id',
    'protocol',
    'external_port',
    'internal_port',
    'client_address',
    'origin',
    'lifetime_seconds',
    'seconds_left',
    'created_at',
    'removable',
  ],
  properties: {
    id: { type: 'string', description: 'Static: "tcp-8080", "udp-27015-27030"; leases (NAT-PMP, PCP): "pmp-<n>".' },
    client_id: { type: 'string' },
    protocol: { enum: ['tcp', 'udp', 'both'] },
    external_port: { ...portOrRange, description: 'A port, or a range "first-last" for static forwards.' },
    internal_port: portOrRange,
    client_address: { ...nullable({ type: 'string' }), description: 'The tunnel address traffic goes to; null while the peer is not on the interface.' },
    origin: { enum: ORIGINS, description: 'Leases of the protocol front-ends (nat-pmp, pcp, upnp) expire; static forwards do not.' },
    description: { type: 'string', description: 'UPnP leases: the NewPortMappingDescription the client sent (client-controlled text).' },
    lifetime_seconds: { ...nullable({ type: 'integer' }), description: 'Granted lifetime; null for static forwards (no expiry).' },
    seconds_left: nullable({ type: 'integer' }),
    created_at: { type: 'string', description: 'ISO 8601.' },
    removable: { type: 'boolean', description: 'DELETE works on it: static forwards created through the API (config ones live in the config file).' },
    public_address: {
      ...nullable({ type: 'string' }),
      description: 'The address the internet reaches it at (with external_port): what to give out. Null while the client is absent.',
    },
  },
} as const satisfies JSONSchema

export const clientViewSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'name', 'public_key', 'addresses', 'endpoint', 'connected', 'latest_handshake', 'rx_bytes', 'tx_bytes'],
  properties: {
    id: { type: 'string', description: 'base64url(sha256(public key)[0..9]): stable and URL-safe.' },
    name: nullable({ type: 'string' }),
    public_key: { type: 'string' },
    addresses: { type: 'array', items: { type: 'string' }, description: 'IPv4 tunnel addresses (/32 allowed IPs).' },
    endpoint: nullable({ type: 'string' }),
    connected: { type: 'boolean', description: 'A handshake within peer_disconnect_seconds.' },
    latest_handshake: { ...nullable({ type: 'string' }), description: 'ISO 8601, null if never.' },
    rx_bytes: { type: 'integer' },
    tx_bytes: { type: 'integer' },
    last_request: { ...nullable({ type: 'string' }), description: 'ISO 8601 time of its latest NAT-PMP/PCP request since the daemon started; null if none.' },
  },
} as const satisfies JSONSchema

export const errorSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['error'],
  properties: { error: { type: 'string' }, details: { type: 'array', items: { type: 'string' } } },
} as const satisfies JSONSchema

export const apiSchemas = {
  'POST /api/clients/{id}/portforwards request': staticForwardBodySchema,
  'POST /api/clients/{id}/portforwards 201': forwardViewSchema,
  'GET /api/portforwards 200': { type: 'array', items: forwardViewSchema },
  'GET /api/clients/{id}/portforwards 200': { type: 'array', items: forwardViewSchema },
  'GET /api/clients 200': { type: 'array', items: clientViewSchema },
  error: errorSchema,
} as const

export type ForwardView = FromSchema<typeof forwardViewSchema>
export type ClientView = FromSchema<typeof clientViewSchema>
export type ErrorBody = FromSchema<typeof errorSchema>
