/** Pure checks of config values that load.ts applies (the daemon refuses them too). */
import { parseIPv4 } from '../core/ip.js'
import { parseHostPort } from './schema-api.js'

export function publicAddressProblem(address: string | undefined): string | null {
  if (address === undefined) return null
  const ip = parseIPv4(address)
  if (ip === null) return `public_address_v4: ${JSON.stringify(address)} is not an IPv4 address`
  const first = ip >>> 24
  const why =
    ip === 0
      ? 'the unspecified address'
      : first === 127
        ? 'a loopback address'
        : first >= 224 && first <= 239
          ? 'a multicast address'
          : ip === 0xffffffff
            ? 'the broadcast address'
            : first === 0
              ? 'in 0.0.0.0/8 ("this network")'
              : null
  return why === null ? null : `public_address_v4: ${address} is ${why}; set the address forwarded traffic arrives on`
}

/** api_listen that the daemon could not bind: not host:port, port above 65535, host not an address. */
export function apiListenProblem(listen: string): string | null {
  const hp = parseHostPort(listen)
  if (hp === null) return `api_listen: ${JSON.stringify(listen)} is not "host:port" with a port 0-65535 (e.g. 127.0.0.1:5352 or [::1]:5352)`
  if (!hp.host.includes(':') && parseIPv4(hp.host) === null) return `api_listen: ${hp.host} is not an IPv4 address`
  return null
}
