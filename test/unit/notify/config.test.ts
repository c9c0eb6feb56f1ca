/** The `notifications` config key: validated, defaults filled, secrets only from files. */
import { describe, expect, it } from 'vitest'
import { parseConfig } from '../../../src/config/load.js'

const err = (notifications: unknown): string => {
  try {
    parseConfig({ notifications })
  } catch (e) {
    return (e as Error).message
  }
  return 'accepted'
}

describe('notifications config', () => {
  it('defaults: no channels, limits filled', () => {
    expect(parseConfig({}).notifications).toEqual({
      webhooks: [],
      ntfy: [],
      commands: [],
      command_timeout_seconds: 10,
      rate_limit_per_minute: 10,
      coalesce_ms: 1000,
      queue_size: 10000,
    })
  })
  it('accepts every channel', () => {
    const n = parseConfig({
      notifications: {
        webhooks: [{ url: 'https://hooks.example/wgpmp', secret_file: '/etc/wgpmp/hook.secret' }],
        ntfy: [{ url: 'https://ntfy.sh/my-wgpmp', token_file: '/etc/wgpmp/ntfy.token' }],
        email: { smtp_url: 'smtp://alerts@mail.example:587', from: 'wgpmp@example.org', to: ['ops@example.org'], password_file: '/etc/wgpmp/smtp.pw' },
        commands: [['/usr/local/bin/on-forward', '--flag']],
      },
    }).notifications
    expect(n.webhooks).toHaveLength(1)
    expect(n.email?.to).toEqual(['ops@example.org'])
  })
  it('refuses secrets inline and unknown keys', () => {
    expect(err({ email: { smtp_url: 'smtp://user:hunter2@mail.example:587', from: 'a@b', to: ['c@d'] } })).toMatch(/notifications\.email\.smtp_url/)
    expect(err({ webhooks: [{ url: 'https://user:pw@hooks.example/x' }] })).toMatch(/notifications\.webhooks\.0\.url/)
    expect(err({ webhooks: [{ url: 'https://hooks.example/x', secret: 'inline' }] })).toMatch(/secret: unknown key/)
    expect(err({ ntfy: [{ url: 'ftp://x' }] })).toMatch(/notifications\.ntfy\.0\.url/)
    expect(err({ commands: [[]] })).toMatch(/notifications\.commands\.0/)
    expect(err({ commands: ['/bin/sh -c x'] })).toMatch(/notifications\.commands\.0: must be array/)
    expect(err({ email: { smtp_url: 'smtp://mail.example', from: 'a@b', to: [] } })).toMatch(/notifications\.email\.to/)
  })
})
