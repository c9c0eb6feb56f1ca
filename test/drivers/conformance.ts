/** driverConformance: the one vitest suite every ForwardDriver (memory, nft, iptables) passes. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { type BaseParams, type ForwardDriver } from '../../src/drivers/driver.js'
import { compareForwards, type Forward, type ForwardChange } from '../../src/core/forward.js'
import { isWgpmpError, type ErrorCode } from '../../src/core/errors.js'

export interface ConformanceSkip {
  readonly reason: string
  /** Test titles exactly as written below; an unknown title fails the suite (no silent typos). */
  readonly tests: readonly string[]
}

export type MakeDriver = () => Promise<{ driver: ForwardDriver; cleanup: () => Promise<void> }>

/** TEST-NET-3 public address, a WireGuard-style interface: no real traffic needed. */
export const CONFORMANCE_BASE: BaseParams = { publicV4: ['203.0.113.7'], wgInterfaces: ['wg0'] }
/** The same with IPv6 (documentation prefix): a public IPv6 address and a guarded client prefix. */
export const CONFORMANCE_BASE_V6: BaseParams = { ...CONFORMANCE_BASE, publicV6: ['2001:db8::7'], guardedV6: ['2001:db8:1::/64'] }

/** An IPv6 DNAT forward (NAT66) to a unique-local client. */
export const fwd6 = (protocol: 'tcp' | 'udp', externalPort: number, internalAddress = 'fd00:8::2', internalPort = externalPort): Forward => ({
  protocol,
  externalPort,
  internalAddress,
  internalPort,
})
/** A pinhole: a client with a global IPv6 address, its own port opened, nothing translated. */
export const pinhole = (protocol: 'tcp' | 'udp', port: number, internalAddress = '2001:db8:1::2'): Forward => ({
  protocol,
  externalPort: port,
  internalAddress,
  internalPort: port,
  pinhole: true,
})

export const fwd = (protocol: 'tcp' | 'udp', externalPort: number, internalAddress = '10.8.0.2', internalPort = externalPort): Forward => ({
  protocol,
  externalPort,
  internalAddress,
  internalPort,
})
export const add = (forward: Forward): ForwardChange => ({ op: 'add', forward })
export const del = (forward: Forward): ForwardChange => ({ op: 'delete', forward })

/** The codes every driver uses for "exists" / "not found", so that all drivers stay interchangeable. */
const EXISTS: ErrorCode = 'WGPMP_FORWARD_EXISTS'
const NOT_FOUND: ErrorCode = 'WGPMP_FORWARD_MISSING'

async function expectCode(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  const e: unknown = await p.then(
    () => new Error('resolved, expected a rejection'),
    (err: unknown) => err,
  )
  expect(isWgpmpError(e) ? e.code : e).toBe(code)
}

const TITLES = [
  'ensureBase then list is empty',
  'adds TCP and UDP forwards and lists them back sorted',
  'the same external port for tcp and udp coexists',
  'deletes a forward by key and keeps the others',
  'replaces a forward with delete + add of the same key in one batch',
  'applies 1,000 adds in one batch',
  'deletes 300 of 1,000 forwards in one batch and adds one, keeping the rest',
  'rejects a batch with an add of an existing key and changes nothing',
  'rejects a batch with a duplicate add inside it and changes nothing',
  'rejects a batch with a delete of a missing key and changes nothing',
  'an empty apply is a no-op',
  'ensureBase twice is idempotent and drops old forwards',
  'teardown then teardown again both succeed, and list is empty after',
  'teardown before ensureBase succeeds',
  'apply after teardown rejects with not-found',
  'IPv6: adds DNAT forwards to a unique-local client and pinholes, and lists them after the IPv4 ones',
  'IPv6: deletes a forward and a pinhole by key and keeps the others',
  'IPv6: replaces a forward with delete + add of the same key in one batch',
  'IPv6: rejects an add of an existing IPv6 key or pinhole and changes nothing',
  'IPv6: rejects a delete of a missing IPv6 forward or pinhole and changes nothing',
  'without the ipv6 capability: rejects IPv6 forwards and pinholes and changes nothing',
] as const
export type ConformanceTest = (typeof TITLES)[number]

/**
 * Registers the suite. make() is called before every test and cleanup() after it, so each test
 * gets a fresh backend (for kernel drivers: a fresh network namespace).
 *
 * Decisions the suite pins down (proposed for the ForwardDriver doc comment):
 * - list() before ensureBase and after teardown resolves [] (nothing installed = no forwards).
 * - apply() without a base rejects WGPMP_FORWARD_MISSING.
 * - A delete matches by (protocol, externalPort); an add/delete pair for one key in one batch
 *   is a replace.
 * - IPv6 (the IPv6 titles run only for a driver whose capabilities say ipv6): an IPv6 forward's
 *   key is its own family's (tcp/40000 for IPv4 and for IPv6 coexist), a pinhole's is the
 *   client's address, protocol and port (forwardKey). A driver without ipv6 rejects them
 *   WGPMP_FORWARD_INVALID.
 */
export function driverConformance(name: string, make: MakeDriver, opts: { skip?: readonly ConformanceSkip[] } = {}): void {
  const skipped = new Map<string, string>()
  for (const s of opts.skip ?? []) {
    for (const t of s.tests) {
      if (!(TITLES as readonly string[]).includes(t)) throw new Error(`driverConformance(${name}): unknown test "${t}" in skip`)
      skipped.set(t, s.reason)
    }
  }

  describe(`ForwardDriver conformance: ${name}`, () => {
    let driver: ForwardDriver
    let cleanup: (() => Promise<void>) | undefined

    beforeEach(async () => {
      const made = await make()
      driver = made.driver
      cleanup = made.cleanup
    })
    afterEach(async () => {
      const c = cleanup
      cleanup = undefined
      await c?.()
    })

    /** when: the test applies only to drivers it is true for (by capability, never by name); skipped for the others. */
    const test = (title: ConformanceTest, fn: () => Promise<void>, when?: (d: ForwardDriver) => boolean): void => {
      const reason = skipped.get(title)
      if (reason !== undefined) it.skip(`${title} (skipped: ${reason})`, fn)
      else {
        it(title, async (ctx) => {
          if (when && !when(driver)) {
            ctx.skip("not this driver's capability")
            return
          }
          await fn()
        })
      }
    }
    const ipv6 = (d: ForwardDriver): boolean => d.capabilities.ipv6

    test('ensureBase then list is empty', async () => {
      await driver.ensureBase(CONFORMANCE_BASE)
      expect(await driver.list()).toEqual([])
    })

    test('adds TCP and UDP forwards and lists them back sorted', async () => {
      await driver.ensureBase(CONFORMANCE_BASE)
      const a = fwd('udp', 40001, '10.8.0.3', 51820)
      const b = fwd('tcp', 40002, '10.8.0.2', 80)
      const c = fwd('tcp', 8080, '10.8.0.4', 8443)
      await driver.apply([add(a), add(b)])
      await driver.apply([add(c)])
      expect(await driver.list()).toEqual([c, b, a]) // tcp before udp, then by external port
    })

    test('the same external port for tcp and udp coexists', async () => {
      await driver.ensureBase(CONFORMANCE_BASE)
      const t = fwd('tcp', 40000, '10.8.0.2', 1000)
      const u = fwd('udp', 40000, '10.8.0.3', 2000)
      await driver.apply([add(u), add(t)])
      expect(await driver.list()).toEqual([t, u])
    })

    test('deletes a forward by key and keeps the others', async () => {
      await driver.ensureBase(CONFORMANCE_BASE)
      const t = fwd('tcp', 40000)
      const u = fwd('udp', 40000)
      const v = fwd('udp', 40001)
      await driver.apply([add(t), add(u), add(v)])
      await driver.apply([del(u)])
      expect(await driver.list()).toEqual([t, v])
      await driver.apply([del(t), del(v)])
      expect(await driver.list()).toEqual([])
      await driver.apply([add(u)]) // the key is free again
      expect(await driver.list()).toEqual([u])
    })

    test('replaces a forward with delete + add of the same key in one batch', async () => {
      await driver.ensureBase(CONFORMANCE_BASE)
      const old = fwd('udp', 40000, '10.8.0.2', 51820)
      const neu = fwd('udp', 40000, '10.8.0.9', 51821)
      await driver.apply([add(old)])
      await driver.apply([del(old), add(neu)])
      expect(await driver.list()).toEqual([neu])
    })

    test('applies 1,000 adds in one batch', async () => {
      await driver.ensureBase(CONFORMANCE_BASE)
      const many = Array.from({ length: 1000 }, (_, i) => fwd(i % 2 === 0 ? 'udp' : 'tcp', 20000 + i, `10.8.${(i >> 8) & 255}.${i & 255 || 1}`, 1 + i))
      await driver.apply(many.map(add))
      const listed = await driver.list()
      expect(listed).toHaveLength(1000)
      expect(listed).toEqual([...many].sort(compareForwards))
    })

    test('deletes 300 of 1,000 forwards in one batch and adds one, keeping the rest', async () => {
      await driver.ensureBase(CONFORMANCE_BASE)
      const many = Array.from({ length: 1000 }, (_, i) => fwd(i % 2 === 0 ? 'udp' : 'tcp', 20000 + i, '10.8.0.2', 1 + i))
      await driver.apply(many.map(add))
      const gone = many.slice(100, 400)
      const extra = fwd('tcp', 45000, '10.8.0.3', 45000)
      await driver.apply([...gone.map(del), add(extra)])
      expect(await driver.list()).toEqual([...many.slice(0, 100), ...many.slice(400), extra].sort(compareForwards))
    })

    test('rejects a batch with an add of an existing key and changes nothing', async () => {
      await driver.ensureBase(CONFORMANCE_BASE)
      const a = fwd('tcp', 40000)
      await driver.apply([add(a)])
      const before = await driver.list()
      // Valid changes before and after the bad one must not be applied either.
      await expectCode(driver.apply([add(fwd('udp', 40010)), add(fwd('tcp', 40000, '10.8.0.3', 9)), add(fwd('udp', 40011))]), EXISTS)
      expect(await driver.list()).toEqual(before)
    })

    test('rejects a batch with a duplicate add inside it and changes nothing', async () => {
      await driver.ensureBase(CONFORMANCE_BASE)
      await driver.apply([add(fwd('udp', 1))])
      const before = await driver.list()
      await expectCode(driver.apply([add(fwd('tcp', 40000)), add(fwd('tcp', 40000, '10.8.0.5', 7))]), EXISTS)
      expect(await driver.list()).toEqual(before)
    })

    test('rejects a batch with a delete of a missing key and changes nothing', async () => {
      await driver.ensureBase(CONFORMANCE_BASE)
      const a = fwd('udp', 40000)
      await driver.apply([add(a)])
      const before = await driver.list()
      // tcp/40000 does not exist (only udp/40000 does); the delete of `a` before it must roll back.
      await expectCode(driver.apply([del(a), add(fwd('udp', 40020)), del(fwd('tcp', 40000))]), NOT_FOUND)
      expect(await driver.list()).toEqual(before)
    })

    test('an empty apply is a no-op', async () => {
      await driver.ensureBase(CONFORMANCE_BASE)
      const a = fwd('tcp', 443, '10.8.0.2', 8443)
      await driver.apply([add(a)])
      await driver.apply([])
      expect(await driver.list()).toEqual([a])
    })

    test('ensureBase twice is idempotent and drops old forwards', async () => {
      await driver.ensureBase(CONFORMANCE_BASE)
      await driver.apply([add(fwd('tcp', 40000)), add(fwd('udp', 40000))])
      await driver.ensureBase(CONFORMANCE_BASE)
      expect(await driver.list()).toEqual([])
      await driver.ensureBase(CONFORMANCE_BASE)
      expect(await driver.list()).toEqual([])
      // Still fully usable, and the old keys are free.
      const a = fwd('tcp', 40000, '10.8.0.7', 22)
      await driver.apply([add(a)])
      expect(await driver.list()).toEqual([a])
    })

    test('teardown then teardown again both succeed, and list is empty after', async () => {
      await driver.ensureBase(CONFORMANCE_BASE)
      await driver.apply([add(fwd('tcp', 40000))])
      await driver.teardown()
      await driver.teardown()
      expect(await driver.list()).toEqual([])
    })

    test('teardown before ensureBase succeeds', async () => {
      await driver.teardown()
      expect(await driver.list()).toEqual([])
    })

    test('apply after teardown rejects with not-found', async () => {
      await driver.ensureBase(CONFORMANCE_BASE)
      await driver.teardown()
      await expectCode(driver.apply([add(fwd('tcp', 40000))]), NOT_FOUND)
      expect(await driver.list()).toEqual([])
    })
    test(
      'IPv6: adds DNAT forwards to a unique-local client and pinholes, and lists them after the IPv4 ones',
      async () => {
        await driver.ensureBase(CONFORMANCE_BASE_V6)
        const v4 = fwd('tcp', 40000, '10.8.0.2', 80)
        const t6 = fwd6('tcp', 40000, 'fd00:8::2', 8080) // the same port as v4: another family, another key
        const u6 = fwd6('udp', 40001, 'fd00:8::3', 51820)
        const p1 = pinhole('tcp', 40002, '2001:db8:1::2')
        const p2 = pinhole('tcp', 40002, '2001:db8:1::3') // the same port for another client: another key
        await driver.apply([add(p2), add(u6), add(v4)])
        await driver.apply([add(p1), add(t6)])
        expect(await driver.list()).toEqual([v4, t6, u6, p1, p2])
      },
      ipv6,
    )

    test(
      'IPv6: deletes a forward and a pinhole by key and keeps the others',
      async () => {
        await driver.ensureBase(CONFORMANCE_BASE_V6)
        const v4 = fwd('udp', 40000)
        const u6 = fwd6('udp', 40000)
        const t6 = fwd6('tcp', 40001)
        const p1 = pinhole('udp', 40000)
        const p2 = pinhole('udp', 40001)
        await driver.apply([add(v4), add(u6), add(t6), add(p1), add(p2)])
        await driver.apply([del(u6), del(p1)])
        expect(await driver.list()).toEqual([v4, t6, p2])
        await driver.apply([add(u6), add(p1)]) // both keys are free again
        expect(await driver.list()).toEqual([v4, t6, u6, p1, p2])
        await driver.apply([del(v4), del(u6), del(t6), del(p1), del(p2)])
        expect(await driver.list()).toEqual([])
      },
      ipv6,
    )

    test(
      'IPv6: replaces a forward with delete + add of the same key in one batch',
      async () => {
        await driver.ensureBase(CONFORMANCE_BASE_V6)
        const old = fwd6('udp', 40000, 'fd00:8::2', 51820)
        const neu = fwd6('udp', 40000, 'fd00:8::9', 51821)
        await driver.apply([add(old)])
        await driver.apply([del(old), add(neu)])
        expect(await driver.list()).toEqual([neu])
      },
      ipv6,
    )

    test(
      'IPv6: rejects an add of an existing IPv6 key or pinhole and changes nothing',
      async () => {
        await driver.ensureBase(CONFORMANCE_BASE_V6)
        const t6 = fwd6('tcp', 40000)
        const p = pinhole('udp', 40001)
        await driver.apply([add(t6), add(p)])
        const before = await driver.list()
        await expectCode(driver.apply([add(fwd6('udp', 40010)), add(fwd6('tcp', 40000, 'fd00:8::3', 9)), add(pinhole('tcp', 40011))]), EXISTS)
        expect(await driver.list()).toEqual(before)
        await expectCode(driver.apply([add(fwd6('udp', 40012)), add(pinhole('udp', 40001))]), EXISTS)
        expect(await driver.list()).toEqual(before)
      },
      ipv6,
    )

    test(
      'IPv6: rejects a delete of a missing IPv6 forward or pinhole and changes nothing',
      async () => {
        await driver.ensureBase(CONFORMANCE_BASE_V6)
        const v4 = fwd('udp', 40000)
        const p = pinhole('udp', 40001, '2001:db8:1::2')
        await driver.apply([add(v4), add(p)])
        const before = await driver.list()
        // udp/40000 exists for IPv4 only: the IPv6 delete names a missing key; the delete of p before it rolls back.
        await expectCode(driver.apply([del(p), add(fwd6('tcp', 40020)), del(fwd6('udp', 40000))]), NOT_FOUND)
        expect(await driver.list()).toEqual(before)
        // The same port opened for another client is another pinhole.
        await expectCode(driver.apply([del(pinhole('udp', 40001, '2001:db8:1::3'))]), NOT_FOUND)
        expect(await driver.list()).toEqual(before)
      },
      ipv6,
    )

    test(
      'without the ipv6 capability: rejects IPv6 forwards and pinholes and changes nothing',
      async () => {
        await driver.ensureBase(CONFORMANCE_BASE)
        const v4 = fwd('tcp', 40000)
        await driver.apply([add(v4)])
        await expectCode(driver.apply([add(fwd('udp', 40001)), add(fwd6('tcp', 40002))]), 'WGPMP_FORWARD_INVALID')
        await expectCode(driver.apply([add(pinhole('tcp', 40003))]), 'WGPMP_FORWARD_INVALID')
        expect(await driver.list()).toEqual([v4])
      },
      (d) => !d.capabilities.ipv6,
    )
  })
}
