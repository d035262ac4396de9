/**
 * How the console copes with a large camera list (bench/gb_catalog_100k.py --console runs it): signs in with
 * Debian's headless Chromium, opens the live page and times until the camera tree shows every camera the node
 * has, then a search in the tree; prints one JSON line with the times (ms) and the page's JS heap (MiB). On failure
 * it leaves a screenshot (CONSOLE_LOAD_SHOT, default /tmp/console-load.png); CONSOLE_LOAD_TIMEOUT_MS bounds each wait.
 *
 *   node web/scripts/console-load.mjs URL PASSWORD EXPECTED_CAMERAS SEARCH
 */
import { chromium } from 'playwright-core'

const [url, password, expectedText, search] = process.argv.slice(2)
const expected = Number(expectedText)
const base = url.replace(/\/$/, '')
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
})
let page = null
try {
  page = await browser.newPage({ viewport: { width: 1440, height: 900 }, locale: 'zh-CN' })
  page.setDefaultTimeout(Number(process.env.CONSOLE_LOAD_TIMEOUT_MS ?? 600_000))
  page.on('pageerror', (err) => console.error(`pageerror: ${err.message}`))
  const cdp = await page.context().newCDPSession(page)
  await cdp.send('Performance.enable')
  await page.goto(`${base}/login`)
  await page.getByTestId('login-username').fill('admin')
  await page.getByTestId('login-password').fill(password)
  const t0 = Date.now()
  await page.getByTestId('login-submit').click()
  await page.waitForURL(/\/live/)
  // The count beside the tree title reads online/total once the catalogue is in.
  await page.waitForFunction(
    (n) => (document.querySelector('.tree-count')?.textContent ?? '').trim().endsWith(`/${n}`),
    expected,
    { polling: 200 },
  )
  await page.locator('.camera-tree .el-tree-node').first().waitFor()
  const shown = Date.now() - t0
  const count = (await page.locator('.tree-count').textContent())?.trim()
  const t1 = Date.now()
  await page.locator('.camera-tree .tree-search input').fill(search)
  await page.locator('.camera-tree .node-camera').first().waitFor()
  const searched = Date.now() - t1
  const metrics = (await cdp.send('Performance.getMetrics')).metrics
  const heap = metrics.find((m) => m.name === 'JSHeapUsedSize')?.value ?? 0
  const nodes = metrics.find((m) => m.name === 'Nodes')?.value ?? 0
  console.log(JSON.stringify({ shown_ms: shown, count, search_ms: searched, heap_mib: Math.round(heap / 2 ** 20), dom_nodes: nodes }))
} catch (err) {
  // What the page showed when it failed.
  await page?.screenshot({ path: process.env.CONSOLE_LOAD_SHOT ?? '/tmp/console-load.png' }).catch(() => undefined)
  throw err
} finally {
  await browser.close()
}
