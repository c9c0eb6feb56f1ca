/** Latency summaries: nearest-rank percentiles over a bounded sample. */

export interface Summary {
  n: number
  p50: number
  p90: number
  p99: number
  max: number
  mean: number
}

export const EMPTY: Summary = { n: 0, p50: NaN, p90: NaN, p99: NaN, max: NaN, mean: NaN }

/** Nearest-rank percentile of an ascending array (p in [0, 100]); NaN when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)))
  return sorted[rank - 1]!
}

/** p50/p90/p99/max/mean of milliseconds, rounded to microseconds. */
export function summarize(values: readonly number[]): Summary {
  if (values.length === 0) return { ...EMPTY }
  const s = [...values].sort((a, b) => a - b)
  const r = (x: number): number => Math.round(x * 1000) / 1000
  return {
    n: s.length,
    p50: r(percentile(s, 50)),
    p90: r(percentile(s, 90)),
    p99: r(percentile(s, 99)),
    max: r(s[s.length - 1]!),
    mean: r(s.reduce((a, b) => a + b, 0) / s.length),
  }
}
