import { describe, expect, it } from 'vitest'
import { createMetrics } from '../../../src/http/metrics.js'

describe('notification metrics', () => {
  it('counts events per channel and outcome', async () => {
    const m = createMetrics({ forwardCounts: () => [], peers: () => ({ total: 0, connected: 0 }) })
    m.countNotification('webhook-1', 'sent', 1000)
    m.countNotification('webhook-1', 'dropped', 3)
    const text = await m.registry.metrics()
    expect(text).toContain('wgpmp_notifications_total{channel="webhook-1",outcome="sent"} 1000')
    expect(text).toContain('wgpmp_notifications_total{channel="webhook-1",outcome="dropped"} 3')
  })
})
