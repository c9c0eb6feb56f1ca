/** The `notifications` config key (issue 13), spread into configSchema.properties. Secrets only through *_file keys. */
import type { JSONSchema } from 'json-schema-to-ts'

const httpUrl = { type: 'string', pattern: '^https?://[^\\s/:@]+(:[0-9]{1,5})?(/\\S*)?$', maxLength: 2048 } as const
const file = { type: 'string', minLength: 1 } as const

export const notificationsConfigProperties = {
  notifications: {
    type: 'object',
    additionalProperties: false,
    default: {},
    description: 'Where forward and client events go (see "Notifications"): webhooks, ntfy, email, commands. Bursts become one digest per channel.',
    properties: {
      webhooks: {
        type: 'array',
        default: [],
        items: {
          type: 'object',
          additionalProperties: false,
          required: ['url'],
          properties: {
            url: { ...httpUrl, description: 'http(s) URL without credentials; receives one JSON POST per event or digest.' },
            secret_file: { ...file, description: 'HMAC-SHA256 key (first line): the body is signed in X-Wgpmp-Signature: sha256=<hex>.' },
            timeout_seconds: {
              type: 'integer',
              minimum: 1,
              maximum: 120,
              default: 10,
              description: 'Per attempt; 3 retries with doubling backoff (1, 2, 4 s), then the message is dropped and counted.',
            },
          },
        },
      },
      ntfy: {
        type: 'array',
        default: [],
        items: {
          type: 'object',
          additionalProperties: false,
          required: ['url'],
          properties: {
            url: { ...httpUrl, description: 'The topic URL, e.g. https://ntfy.sh/my-wgpmp.' },
            token_file: { ...file, description: 'Access token (first line), sent as a Bearer token.' },
            timeout_seconds: { type: 'integer', minimum: 1, maximum: 120, default: 10, description: 'Per attempt, as for webhooks.' },
          },
        },
      },
      email: {
        type: 'object',
        additionalProperties: false,
        required: ['smtp_url', 'from', 'to'],
        properties: {
          smtp_url: {
            type: 'string',
            pattern: '^smtps?://([^\\s/:@]+@)?[^\\s/@]+(:[0-9]{1,5})?/?$',
            description: 'smtp://[user@]host:587 (STARTTLS when offered) or smtps://[user@]host:465. No password here.',
          },
          from: { type: 'string', minLength: 3, maxLength: 256 },
          to: { type: 'array', minItems: 1, items: { type: 'string', minLength: 3, maxLength: 256 } },
          password_file: { ...file, description: 'SMTP password (first line) for the user in smtp_url.' },
        },
      },
      commands: {
        type: 'array',
        default: [],
        items: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
        description: 'argv arrays run without a shell, e.g. [["/usr/local/bin/on-forward", "--flag"]]: the event as JSON on stdin and as WGPMP_* variables.',
      },
      command_timeout_seconds: { type: 'integer', minimum: 1, maximum: 600, default: 10, description: 'A command still running after this is killed.' },
      rate_limit_per_minute: {
        type: 'integer',
        minimum: 1,
        maximum: 600,
        default: 10,
        description: 'Deliveries per channel per minute (bursts of 3); events meanwhile wait and go as one digest.',
      },
      coalesce_ms: {
        type: 'integer',
        minimum: 0,
        maximum: 60000,
        default: 1000,
        description: 'How long the first event of a burst waits for the rest before a channel delivers.',
      },
      queue_size: {
        type: 'integer',
        minimum: 1,
        maximum: 1000000,
        default: 10000,
        description: 'Events a channel may hold waiting; more are dropped and counted (wgpmp_notifications_total{outcome="dropped"}).',
      },
    },
  },
} as const satisfies Record<string, JSONSchema>
