/**
 * The Ports page in a real headless browser (Debian's chromium driven by playwright-core) against
 * the API with fake deps on 127.0.0.1. Writes test/artifacts/page.png for people to look at.
 * Needs no root; skipped only when /usr/bin/chromium is missing.
 */
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { chromium, type Browser, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startApi, type ApiDeps, type ApiServer } from '../../src/http/api.js'
import { silentLogger } from '../../src/log.js'
import { fakeDeps, PHONE, SEEDBOX, type Fake } from '../helpers/fake-api-deps.js'

const CHROMIUM = '/usr/bin/chromium'
const TOKEN = 'page-test-token-0123456789'
const ARTIFACTS = new URL('../artifacts/', import.meta.url)

describe.skipIf(!existsSync(CHROMIUM))('Ports page in headless chromium', () => {
  let fake: Fake
  let api: ApiServer
  let browser: Browser
  let page: Page
  let base: string
  const consoleErrors: string[] = []
  const probed: string[] = []

  beforeAll(async () => {
    fake = await fakeDeps()
    const deps: ApiDeps = {
      ...fake.deps,
      upnpLocation: 'http://10.8.0.1:2870/rootDesc.xml', // upnp_http_port 2870: the line follows the config
      publicAddressOf: (a) => (a === null ? null : '198.51.100.1'),
      lastRequestOf: (c) => (c.id === SEEDBOX ? new Date(Date.now() - 12_000).toISOString() : null),
      testForward: (f) => {
        probed.push(f.id)
        return Promise.resolve({
          outcome: 'refused',
          protocol: 'tcp',
          target: `198.51.100.1:${f.external_port}`,
          ms: 3,
          message: `198.51.100.1:${f.external_port} reached the client, but nothing listens on its port (connection refused).`,
        })
      },
    }
    api = await startApi({ listen: { host: '127.0.0.1', port: 0 }, token: TOKEN, deps, log: silentLogger() })
    base = `http://127.0.0.1:${api.address.port}`
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    })
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 }, deviceScaleFactor: 1, colorScheme: 'light' })
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base })
    page = await context.newPage()
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text())
    })
    page.on('pageerror', (e) => consoleErrors.push(e.message))
  })

  afterAll(async () => {
    await browser?.close()
    await api?.close()
    await fake?.cleanup()
  })

  it('asks for the token, then lists clients and their forwards', async () => {
    await page.goto(base + '/')
    await expect.poll(() => page.locator('#login').isVisible()).toBe(true)
    await page.fill('#token', 'wrong-token-000000000000')
    await page.click('#loginform button')
    await expect.poll(() => page.locator('#loginmsg').textContent()).toBe('That token was not accepted.')

    await page.fill('#token', TOKEN)
    await page.click('#loginform button')
    const seedbox = page.locator(`[data-client="${SEEDBOX}"]`)
    await seedbox.waitFor()
    expect(await seedbox.locator('.name').textContent()).toBe('seedbox <qbittorrent>') // as text, not HTML
    expect(await seedbox.locator('.addr').first().textContent()).toBe('10.8.0.2')
    expect(await seedbox.locator('tbody tr').count()).toBe(2)
    expect(await seedbox.locator('tbody tr').first().textContent()).toMatch(/UDP198\.51\.100\.1:51413.*10\.8\.0\.2:51413.*NAT-PMP.*1 h 28 min/)
    expect(await seedbox.locator('.head .meta').textContent()).toMatch(/last request 1\d s ago/)
    const phone = page.locator(`[data-client="${PHONE}"]`)
    expect(await phone.locator('.name').textContent()).toBe(PHONE)
    expect(await phone.locator('tbody tr').first().textContent()).toMatch(/TCP198\.51\.100\.1:443.*10\.8\.0\.3:8443.*static.*never expires.*config file/)
    expect(await phone.locator('.head .meta').textContent()).toContain('no request yet')
    expect(await phone.locator('tbody tr').first().locator('button', { hasText: 'Remove' }).count()).toBe(0) // config forwards are not removable
    expect(await page.evaluate(() => localStorage.getItem('wgpmp.token'))).toBe(TOKEN)
  })

  it('keeps the token across a reload', async () => {
    await page.reload()
    await page.locator(`[data-client="${SEEDBOX}"] tbody tr`).first().waitFor()
    expect(await page.locator('#login').isVisible()).toBe(false)
  })

  it('adds a static forward, shows a refused one, and removes it', async () => {
    const card = page.locator(`[data-client="${SEEDBOX}"]`)
    await card.locator('select[name=protocol]').selectOption('udp')
    await card.locator('input[name=external_port]').fill('27015-27030')
    await card.locator('form.add button').click()
    const row = card.locator('tr[data-forward="udp-27015-27030"]')
    await row.waitFor()
    expect(await row.textContent()).toMatch(/UDP198\.51\.100\.1:27015-27030.*10\.8\.0\.2:27015-27030.*static/)
    expect(fake.batches.at(-1)).toHaveLength(16)

    await card.locator('select[name=protocol]').selectOption('tcp')
    await card.locator('input[name=external_port]').fill('443')
    await card.locator('form.add button').click()
    await expect.poll(() => page.locator('#msg').textContent()).toMatch(/overlaps the static forward 443:8443\/tcp/)

    await card.locator('select[name=protocol]').selectOption('tcp')
    await card.locator('input[name=external_port]').fill('8080')
    await card.locator('input[name=internal_port]').fill('80')
    await card.locator('form.add button').click()
    await card.locator('tr[data-forward="tcp-8080"]').waitFor()
    expect(await page.locator('#msg').isVisible()).toBe(false)

    await row.locator('button', { hasText: 'Remove' }).click()
    await row.waitFor({ state: 'detached' })
    expect(fake.batches.at(-1)!.every((c) => c.op === 'delete')).toBe(true)
  })

  it('copies the public address:port with one click', async () => {
    const button = page.locator(`[data-client="${SEEDBOX}"] tr[data-forward="tcp-8080"] button.copy`)
    await button.click()
    await expect.poll(() => page.evaluate(() => navigator.clipboard.readText())).toBe('198.51.100.1:8080')
    expect(await button.getAttribute('class')).toContain('done')
  })

  it('tests a forward from the server and shows what came back', async () => {
    const card = page.locator(`[data-client="${SEEDBOX}"]`)
    await card.locator('tr[data-forward="tcp-8080"] button.test').click()
    const result = card.locator('tr[data-probe="tcp-8080"]')
    await result.waitFor()
    expect(await result.textContent()).toBe('198.51.100.1:8080 reached the client, but nothing listens on its port (connection refused).')
    expect(await result.locator('td').getAttribute('class')).toBe('probe-refused')
    expect(probed).toEqual(['tcp-8080'])
    await page.waitForTimeout(2500) // survives a refresh
    expect(await result.isVisible()).toBe(true)
  })

  it('shows the setup lines for the gateway', async () => {
    const card = page.locator(`[data-client="${SEEDBOX}"]`)
    await card.locator('summary').click()
    const lines = await card.locator('.howto code').allTextContents()
    expect(lines).toEqual([
      'while true; do natpmpc -g 10.8.0.1 -a 0 51413 tcp 60 && natpmpc -g 10.8.0.1 -a 0 51413 udp 60; sleep 45; done',
      'natpmp_gateway=10.8.0.1',
      'VPN_SERVICE_PROVIDER=custom\nVPN_TYPE=wireguard\nVPN_PORT_FORWARDING=on\nVPN_PORT_FORWARDING_PROVIDER=protonvpn',
      'gateway 10.8.0.1, UDP port 5351',
      'upnpc -u http://10.8.0.1:2870/rootDesc.xml -i -e wgpmp -r 51413 tcp 51413 udp',
    ])
    expect(await card.locator('.howto').textContent()).toContain('239.255.255.250/32 in AllowedIPs on the client')
    await card.locator('.howto button.copy').nth(1).click()
    await expect.poll(() => page.evaluate(() => navigator.clipboard.readText())).toBe('natpmp_gateway=10.8.0.1')
  })

  it('refreshes on its own and writes a screenshot', async () => {
    // A forward created behind the page's back appears within one refresh (2 s).
    await fake.deps.createStatic(PHONE, { protocol: 'both', external: { first: 25565, last: 25565 }, internal: { first: 25565, last: 25565 } })
    await page.locator(`[data-client="${PHONE}"] tr[data-forward="both-25565"]`).waitFor({ timeout: 5000 })
    await page.mouse.move(0, 0)
    await mkdir(ARTIFACTS, { recursive: true })
    await page.screenshot({ path: new URL('page.png', ARTIFACTS).pathname, fullPage: true })
    for (const width of [1280, 390]) {
      await page.setViewportSize({ width, height: 900 })
      await page.waitForTimeout(300)
      const problems = await page.evaluate(layoutProblems)
      await page.screenshot({ path: new URL(`page-${width}.png`, ARTIFACTS).pathname, fullPage: true })
      expect.soft(problems, `layout at ${width} px`).toEqual([])
    }
    // The forward to :80 reads in full (the checks above would see it clipped).
    expect(await page.locator(`[data-client="${SEEDBOX}"] tr[data-forward="tcp-8080"] td.addr`).textContent()).toBe('10.8.0.2:80')
    await page.setViewportSize({ width: 1100, height: 900 })
    // 401 and 409 are provoked above; anything else (a CSP violation, a script error) fails the test.
    expect(consoleErrors.filter((e) => !/status of (401|409)/.test(e))).toEqual([])
  })
})

/**
 * Runs in the page: everything that overflows the viewport sideways, any box whose content is
 * wider than the box (clipped or spilling), and any two cells of a row that overlap.
 */
function layoutProblems(): string[] {
  const out: string[] = []
  const name = (e: Element): string =>
    `${e.tagName.toLowerCase()}${e.className ? '.' + String(e.className).split(' ').join('.') : ''} "${(e.textContent ?? '').trim().slice(0, 40)}"`
  if (document.documentElement.scrollWidth > window.innerWidth)
    out.push(`page is ${document.documentElement.scrollWidth} px wide in a ${window.innerWidth} px window`)
  for (const e of Array.from(document.querySelectorAll('#app td, #app th, #app button, #app code, #app .head > *, #app form > *, header > *'))) {
    const cs = getComputedStyle(e)
    if (cs.display === 'inline' || cs.display === 'none') continue
    if (e.scrollWidth > e.clientWidth + 1) out.push(`${name(e)}: content ${e.scrollWidth} px in ${e.clientWidth} px`)
    const r = e.getBoundingClientRect()
    if (r.right > window.innerWidth + 0.5 || r.left < -0.5) out.push(`${name(e)}: outside the window (${Math.round(r.left)}..${Math.round(r.right)})`)
    // text wider than its box (a Range measures the text itself)
    const range = document.createRange()
    range.selectNodeContents(e)
    const tr = range.getBoundingClientRect()
    if (tr.width > 0 && (tr.right > r.right + 1 || tr.left < r.left - 1))
      out.push(`${name(e)}: text ${Math.round(tr.left)}..${Math.round(tr.right)} outside its box ${Math.round(r.left)}..${Math.round(r.right)}`)
  }
  for (const row of Array.from(document.querySelectorAll('#app tr'))) {
    const cells: { c: Element; r: DOMRect }[] = Array.from(row.children)
      .filter((c) => getComputedStyle(c).display !== 'none')
      .map((c) => ({ c, r: c.getBoundingClientRect() }))
      .filter((x) => x.r.width > 0 && x.r.height > 0)
    for (let i = 0; i < cells.length; i++) {
      for (let j = i + 1; j < cells.length; j++) {
        const a = cells[i]!.r
        const b = cells[j]!.r
        const ix = Math.min(a.right, b.right) - Math.max(a.left, b.left)
        const iy = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top)
        if (ix > 1 && iy > 1) out.push(`${name(cells[i]!.c)} overlaps ${name(cells[j]!.c)}`)
      }
    }
  }
  return out
}
