/**
 * Child process for nft-driver.test.ts: an NftDriver in library mode (libnftables in-process),
 * run with `ip netns exec NS node --import tsx` so that the library acts on that namespace. Answers
 * bench/lib/rpc.ts calls; an error goes back as JSON {code, message} so the test can rethrow it
 * as the WgpmpError it was.
 */
import { serve } from '../../bench/lib/rpc.js'
import type { BaseParams } from '../../src/drivers/driver.js'
import type { ForwardChange } from '../../src/core/forward.js'
import { NftDriver } from '../../src/drivers/nft.js'
import { isWgpmpError } from '../../src/core/errors.js'
import { systemExec } from '../../src/core/exec.js'

const driver = new NftDriver({ exec: systemExec, mode: 'library' })

const wire = async <T>(fn: () => Promise<T>): Promise<T> => {
  try {
    return await fn()
  } catch (e) {
    const out = new Error('driver error')
    out.stack = JSON.stringify({ code: isWgpmpError(e) ? e.code : null, message: e instanceof Error ? e.message : String(e) })
    throw out
  }
}

serve(
  {
    ensureBase: (p: BaseParams) => wire(() => driver.ensureBase(p)),
    apply: (p: readonly ForwardChange[]) => wire(() => driver.apply(p)),
    list: () => wire(() => driver.list()),
    teardown: () => wire(() => driver.teardown()),
    listChains: () => wire(() => driver.listChains()),
    mode: () => ({ mode: driver.mode, fallback: driver.fallback }),
  },
  () => driver.close(),
)
