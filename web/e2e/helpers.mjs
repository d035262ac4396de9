/**
 * Shared setup for the console's browser tests: Debian's real headless Chromium driven by playwright-core
 * (no browser download). Env: VIGIL_URL (default http://127.0.0.1:8080), VIGIL_ADMIN_USER (default admin),
 * VIGIL_ADMIN_PASSWORD (required), CHROMIUM (default /usr/bin/chromium).
 */
import { mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

export const BASE = (process.env.VIGIL_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '')
export const ADMIN_USER = process.env.VIGIL_ADMIN_USER ?? 'admin'
export const ADMIN_PASSWORD = process.env.VIGIL_ADMIN_PASSWORD ?? ''
const SHOTS = join(dirname(fileURLToPath(import.meta.url)), 'screenshots')

export async function launch() {
  if (!ADMIN_PASSWORD) throw new Error('set VIGIL_ADMIN_PASSWORD (and VIGIL_URL, VIGIL_ADMIN_USER) to run the console e2e tests')
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-quic',
      '--no-first-run',
      '--autoplay-policy=no-user-gesture-required',
    ],
  })
}

/** A fresh context (own cookies and localStorage, so the default zh-CN applies) and page. */
export async function newPage(browser) {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, locale: 'zh-CN' })
  const page = await context.newPage()
  page.setDefaultTimeout(15_000)
  const problems = []
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`))
  page.problems = problems
  return page
}

/** Sign in as the admin through the login form and wait for the console. */
export async function login(page, { user = ADMIN_USER, password = ADMIN_PASSWORD } = {}) {
  await page.goto(`${BASE}/login`)
  await page.getByTestId('login-username').fill(user)
  await page.getByTestId('login-password').fill(password)
  await page.getByTestId('login-submit').click()
  await Promise.race([
    page.waitForURL(/\/live/),
    page
      .getByTestId('password-change')
      .waitFor()
      .then(() => {
        throw new Error(`${user} must change the initial password first; start Vigil with a settled admin password`)
      }),
  ])
  await page.getByTestId('product-name').waitFor()
}

export async function screenshot(page, name) {
  mkdirSync(SHOTS, { recursive: true })
  await page.screenshot({ path: join(SHOTS, `${name}.png`) })
}

/** Poll `fn` in the page until it returns a truthy value; fail with `what` and the last value after `timeoutMs`. */
export async function waitInPage(page, fn, arg, { timeoutMs = 30_000, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs
  let last
  while (Date.now() < deadline) {
    last = await page.evaluate(fn, arg)
    if (last && (typeof last !== 'object' || last.ok)) return last
    await page.waitForTimeout(250)
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${JSON.stringify(last)}`)
}

/** State of the first <video> inside `selector`. */
export function videoState(selector) {
  const v = document.querySelector(`${selector} video`)
  if (!v) return { ok: false, missing: true }
  return { ok: false, currentTime: v.currentTime, videoWidth: v.videoWidth, playbackRate: v.playbackRate, readyState: v.readyState }
}

/** Click the first online camera in the left tree and return its id. */
export async function pickOnlineCamera(page) {
  const node = page.locator('[data-testid="tree-camera"][data-state="online"]').first()
  await node.waitFor({ timeout: 60_000 })
  const id = await node.getAttribute('data-camera-id')
  await node.click()
  return id
}

/** Find a JSON key anywhere in a parsed document. */
export function findKey(obj, key) {
  if (!obj || typeof obj !== 'object') return undefined
  if (key in obj) return obj[key]
  for (const v of Object.values(obj)) {
    const found = findKey(v, key)
    if (found !== undefined) return found
  }
  return undefined
}

/**
 * On the playback page with a camera picked: wait until its newest recorded range holds at least `minUs`
 * (recording is still growing for a camera that just started), then zoom to 1 h and click that range.
 */
export async function clickRecordedRange(page, minUs = 8_000_000) {
  const deadline = Date.now() + 90_000
  for (;;) {
    const ranges = page.getByTestId('tl-range')
    if ((await ranges.count()) > 0) {
      const last = ranges.last()
      const start = Number(await last.getAttribute('data-start-us'))
      const end = Number(await last.getAttribute('data-end-us'))
      if (end - start >= minUs) break
    }
    if (Date.now() > deadline) throw new Error('no recorded range long enough appeared on the timeline')
    await page.waitForTimeout(2000)
    await page.getByTestId('pb-refresh').click()
  }
  await page.getByTestId('tl-zoom-1').click()
  await page.getByTestId('tl-range').last().click()
}

/** Wait until no Vue transition is entering (a dialog fading in), so that a screenshot shows it whole. */
export async function settled(page) {
  await page.waitForFunction(() => !document.querySelector('[class*="-enter-active"]'))
}
