// Micro-benchmarks only: `npx vitest bench --run --config bench/vitest.config.ts` (no root needed).
import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: { include: [], benchmark: { include: ['bench/*.bench.ts'] } },
})
