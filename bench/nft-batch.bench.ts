/** Hot path: building and serialising one `nft -j` batch (what NftDriver.apply writes per group commit). */
import { bench, describe } from 'vitest'
import type { ForwardChange } from '../src/core/forward.js'
import { buildBatch } from '../src/drivers/nft-batch.js'

const changes = (n: number, op: 'add' | 'delete'): ForwardChange[] =>
  Array.from({ length: n }, (_, i) => ({
    op,
    forward: {
      protocol: i % 2 ? 'udp' : 'tcp',
      externalPort: 1024 + (i >> 1),
      internalAddress: `10.8.${128 + ((i >> 8) & 127)}.${i & 255}`,
      internalPort: 10000 + (i % 5000),
    },
  }))

for (const n of [1, 64, 10_000]) {
  describe(`nft batch of ${n.toLocaleString('en')}`, () => {
    const adds = changes(n, 'add')
    const dels = changes(n, 'delete')
    bench('buildBatch + JSON.stringify (adds)', () => {
      JSON.stringify(buildBatch(adds))
    })
    bench('buildBatch + JSON.stringify (deletes)', () => {
      JSON.stringify(buildBatch(dels))
    })
  })
}
