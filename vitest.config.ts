import { defineConfig } from 'vitest/config'

// Two projects: `unit` is pure logic and needs no root; `integration` builds network namespaces
// and needs root (CI is root). Integration files skip themselves when not root.
export default defineConfig({
  test: {
    projects: [
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
    ],
  },
})
