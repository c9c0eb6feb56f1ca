import { describe, expect, it } from 'vitest'
import { forwardedV4, publicAddresses } from '../../../src/host/addresses.js'

describe('forwardedV4: the destinations forwards match', () => {
  it('an announced address of this host is the only one', () => {
    expect(forwardedV4('198.51.100.1', ['127.0.0.1', '198.51.100.1', '198.51.100.2'], ['198.51.100.1', '198.51.100.2'])).toEqual(['198.51.100.1'])
  })
  it("behind 1:1 NAT or a Docker bridge (the announced address is not local), public_interface's addresses too", () => {
    expect(forwardedV4('203.0.113.7', ['127.0.0.1', '10.42.42.42'], ['10.42.42.42'])).toEqual(['203.0.113.7', '10.42.42.42'])
    expect(forwardedV4('203.0.113.7', ['127.0.0.1'], [])).toEqual(['203.0.113.7']) // nothing else to add
  })
  it('publicAddresses: an override (tests) and an address read off the interface match only themselves', () => {
    expect(publicAddresses({ public_interface: 'lo', public_address_v4: '203.0.113.7' }, null, { v4: '203.0.113.8' }).matchV4).toEqual(['203.0.113.8'])
    expect(publicAddresses({ public_interface: 'lo' }, null)).toEqual({ v4: '127.0.0.1', v6: null, matchV4: ['127.0.0.1'] })
    // a configured address that is not local: lo's own address is added
    expect(publicAddresses({ public_interface: 'lo', public_address_v4: '203.0.113.7' }, null).matchV4).toEqual(['203.0.113.7', '127.0.0.1'])
  })
})
