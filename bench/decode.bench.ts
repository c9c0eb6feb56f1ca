/** Hot path: decoding a NAT-PMP request and encoding its reply (setup outside the measured function). */
import { bench, describe } from 'vitest'
import { Opcode, ResultCode } from '../src/protocol/constants.js'
import { decodeRequest, encodeMapResponse, encodeRequest } from '../src/protocol/natpmp.js'

const map = encodeRequest({ op: Opcode.MapTcp, internalPort: 51413, suggestedExternalPort: 0, lifetimeSeconds: 3600 })
const pub = encodeRequest({ op: Opcode.PublicAddress })
const garbage = Uint8Array.of(2, 1, 0, 0, 0, 0)

describe('natpmp codec', () => {
  bench('decodeRequest MAP TCP', () => {
    decodeRequest(map)
  })
  bench('decodeRequest public address', () => {
    decodeRequest(pub)
  })
  bench('decodeRequest wrong version (PCP first)', () => {
    decodeRequest(garbage)
  })
  bench('encodeMapResponse', () => {
    encodeMapResponse({ op: Opcode.MapTcp, result: ResultCode.Success, internalPort: 51413, externalPort: 40000, lifetimeSeconds: 3600 }, 1234)
  })
})
