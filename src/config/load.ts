/** Config loading: parse, validate against the schema (ajv, defaults filled), cross-field checks, freeze. */
import { readFile } from 'node:fs/promises'
import { Ajv, type ErrorObject } from 'ajv'
import { WgpmpError } from '../core/errors.js'
import { parseCidr4, parseCidr6, parseIPv4 } from '../core/ip.js'
import { parseIpv6 } from '../core/ip.js'
import { configSchema, type Config } from './schema.js'
import { publicAddressProblem, apiListenProblem } from './checks.js'

const ajv = (): Ajv => {
  const a = new Ajv({ allErrors: true, useDefaults: true, strict: true })
  a.addFormat('ipv4', { type: 'string', validate: (s: string) => parseIPv4(s) !== null })
  a.addFormat('cidr4', { type: 'string', validate: (s: string) => s.includes('/') && parseCidr4(s) !== null })
  a.addFormat('ipv6', { type: 'string', validate: (s: string) => s.includes(':') && parseIpv6(s) !== null })
  a.addFormat('cidr6', { type: 'string', validate: (s: string) => s.includes('/') && parseCidr6(s) !== null })
  return a
}

let compiled: ReturnType<Ajv['compile']> | null = null

const FORMAT_NAMES: Record<string, string> = {
  cidr4: 'IPv4 address with prefix (e.g. 10.8.0.1/24)',
  ipv4: 'IPv4 address',
  cidr6: 'IPv6 address with prefix (e.g. fd42:42::1/64)',
  ipv6: 'IPv6 address',
}

/** One readable line per problem, naming the key: `port_forward_min_port: must be <= 65535`. */
export function formatAjvErrors(errors: readonly ErrorObject[]): string[] {
  return errors.map((e) => {
    const path = e.instancePath.replace(/^\//, '').replace(/\//g, '.')
    if (e.keyword === 'additionalProperties') {
      const extra = (e.params as { additionalProperty: string }).additionalProperty
      return `${path ? path + '.' : ''}${extra}: unknown key`
    }
    if (e.keyword === 'required') return `${(e.params as { missingProperty: string }).missingProperty}: required`
    if (e.keyword === 'enum')
      return `${path}: must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}`
    if (e.keyword === 'format') return `${path}: not a valid ${FORMAT_NAMES[(e.params as { format: string }).format] ?? 'value'}`
    return `${path || '(config)'}: ${e.message ?? 'invalid'}`
  })
}

/** Validates a parsed value. Rejects with WGPMP_CONFIG_INVALID listing every problem. */
export function parseConfig(value: unknown, source = 'config'): Readonly<Config> {
  const data: unknown = structuredClone(value)
  compiled ??= ajv().compile(configSchema)
  if (!compiled(data)) {
    const lines = formatAjvErrors(compiled.errors ?? [])
    throw new WgpmpError('WGPMP_CONFIG_INVALID', `${source}: ${lines.join('; ')}`, { cause: compiled.errors })
  }
  const c = data as Config
  const problems: string[] = []
  if (c.port_forward_min_port > c.port_forward_max_port) {
    problems.push(`port_forward_min_port: ${c.port_forward_min_port} is greater than port_forward_max_port ${c.port_forward_max_port}`)
  }
  if (c.lifetime_min_seconds > c.lifetime_max_seconds) {
    problems.push(`lifetime_min_seconds: ${c.lifetime_min_seconds} is greater than lifetime_max_seconds ${c.lifetime_max_seconds}`)
  }
  const wg = parseCidr4(c.wg_address_v4)
  if (wg && wg.prefix > 30) problems.push(`wg_address_v4: prefix /${wg.prefix} leaves no room for clients (use e.g. /24)`)
  if (c.wg_address_v6 !== undefined && c.port_forward_driver === 'iptables') {
    problems.push('wg_address_v6: IPv6 forwards need port_forward_driver "nft" (the iptables-compat driver is IPv4 only)')
  }
  // Issue 10 §6: values the schema lets through but the daemon cannot use.
  for (const p of [publicAddressProblem(c.public_address_v4), apiListenProblem(c.api_listen)]) if (p) problems.push(p)
  if (problems.length > 0) throw new WgpmpError('WGPMP_CONFIG_INVALID', `${source}: ${problems.join('; ')}`)
  return deepFreeze(c)
}

/** Reads and validates a config file. Every failure is one WGPMP_CONFIG_INVALID message naming the file. */
export async function loadConfig(path: string): Promise<Readonly<Config>> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (e) {
    throw new WgpmpError('WGPMP_CONFIG_INVALID', `${path}: cannot read (${(e as Error).message})`, { cause: e })
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (e) {
    throw new WgpmpError('WGPMP_CONFIG_INVALID', `${path}: not valid JSON (${(e as Error).message})`, { cause: e })
  }
  return parseConfig(value, path)
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v)
    Object.freeze(o)
  }
  return o
}
