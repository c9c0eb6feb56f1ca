import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfig, parseConfig } from '../../../src/config/load.js'
import { WgpmpError } from '../../../src/core/errors.js'

const message = (fn: () => unknown): string => {
  try {
    fn()
  } catch (e) {
    expect(e).toBeInstanceOf(WgpmpError)
    expect((e as WgpmpError).code).toBe('WGPMP_CONFIG_INVALID')
    return (e as Error).message
  }
  throw new Error('expected a config error')
}

describe('parseConfig', () => {
  it('fills every default', () => {
    const c = parseConfig({ port_forward_enabled: true })
    expect(c).toMatchObject({
      port_forward_enabled: true,
      port_forward_min_port: 1024,
      port_forward_max_port: 65535,
      wg_interface: 'wg0',
      wg_address_v4: '10.8.0.1/24',
      public_interface: 'eth0',
      port_forward_driver: 'nft',
      lifetime_min_seconds: 120,
      lifetime_max_seconds: 7200,
    })
    expect(c.public_address_v4).toBeUndefined()
    expect(Object.isFrozen(c)).toBe(true)
  })
  it('does not modify its input', () => {
    const input = { port_forward_enabled: true }
    parseConfig(input)
    expect(input).toEqual({ port_forward_enabled: true })
  })
  it.each([
    [{ bogus: 1 }, 'bogus: unknown key'],
    [{ port_forward_min_port: 'x' }, 'port_forward_min_port: must be integer'],
    [{ port_forward_max_port: 70000 }, 'port_forward_max_port: must be <= 65535'],
    [{ port_forward_min_port: 5000, port_forward_max_port: 4000 }, 'port_forward_min_port: 5000 is greater than port_forward_max_port 4000'],
    [{ wg_address_v4: '10.8.0.300/24' }, 'wg_address_v4: not a valid IPv4 address with prefix'],
    [{ wg_address_v4: '10.8.0.1' }, 'wg_address_v4: not a valid IPv4 address with prefix'],
    [{ public_address_v4: 'example.com' }, 'public_address_v4: not a valid IPv4 address'],
    [{ port_forward_driver: 'pf' }, 'port_forward_driver: must be one of "nft", "iptables"'],
    [{ wg_address_v4: '10.8.0.1/32' }, 'wg_address_v4: prefix /32 leaves no room'],
    [{ wg_interface: 'a-very-long-interface-name' }, 'wg_interface: must NOT have more than 15 characters'],
  ])('refuses %j and names the key', (value, expected) => {
    expect(message(() => parseConfig(value))).toContain(expected)
  })
  it('reports every problem in one message', () => {
    const m = message(() => parseConfig({ a: 1, port_forward_min_port: 0 }))
    expect(m).toContain('a: unknown key')
    expect(m).toContain('port_forward_min_port: must be >= 1')
  })
})

describe('loadConfig', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wgpmp-config-'))
  it('names the file when it is not JSON', async () => {
    const p = join(dir, 'bad.json')
    writeFileSync(p, '{ "port_forward_enabled": tru }')
    await expect(loadConfig(p)).rejects.toThrow(`${p}: not valid JSON`)
  })
  it('names the file when it is missing', async () => {
    await expect(loadConfig(join(dir, 'nope.json'))).rejects.toThrow('cannot read')
  })
  it('loads a good file', async () => {
    const p = join(dir, 'ok.json')
    writeFileSync(p, JSON.stringify({ port_forward_enabled: true, public_address_v4: '198.51.100.1' }))
    expect((await loadConfig(p)).public_address_v4).toBe('198.51.100.1')
  })
})

describe('IPv6 keys', () => {
  it('accepts an IPv6 setup and refuses IPv6 with the iptables driver', () => {
    expect(
      parseConfig({ wg_address_v6: 'fd42:42::1/64', public_address_v6: '2001:db8:100::1', ipv6_guarded_prefixes: ['2001:db8:200::/64'] }).wg_address_v6,
    ).toBe('fd42:42::1/64')
    expect(message(() => parseConfig({ wg_address_v6: 'fd42:42::1' }))).toContain('wg_address_v6: not a valid IPv6 address with prefix')
    expect(message(() => parseConfig({ public_address_v6: '10.0.0.1' }))).toContain('public_address_v6: not a valid IPv6 address')
    expect(message(() => parseConfig({ wg_address_v6: 'fd42:42::1/64', port_forward_driver: 'iptables' }))).toContain(
      'IPv6 forwards need port_forward_driver "nft"',
    )
  })
  it('cidr6Network clears host bits', async () => {
    const { cidr6Network, parseCidr6 } = await import('../../../src/core/ip.js')
    expect(cidr6Network(parseCidr6('2001:db8:200::1/64')!)).toBe('2001:db8:200::/64')
    expect(cidr6Network(parseCidr6('fd42:42:0:0:ffff::1/56')!)).toBe('fd42:42::/56')
  })
})
