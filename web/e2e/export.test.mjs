import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { BASE, clickRecordedRange, findKey, launch, login, newPage, pickOnlineCamera, screenshot } from './helpers.mjs'

let browser
before(async () => {
  browser = await launch()
})
after(async () => {
  await browser?.close()
})

test('an export needs a reason and yields a clip and a manifest with its SHA-256', async () => {
  const page = await newPage(browser)
  await login(page)
  await page.getByTestId('nav-playback').click()
  await pickOnlineCamera(page)
  await clickRecordedRange(page)

  // No reason: refused in the console, nothing requested.
  await page.getByTestId('export-create').click()
  await page.getByText('请填写调阅事由').waitFor()
  assert.equal(await page.getByTestId('export-item').count(), 0)

  await page.getByTestId('export-reason').fill('e2e 测试：案件编号 2024-001')
  await page.getByTestId('export-create').click()
  const link = page.getByTestId('export-manifest-link').first()
  await link.waitFor({ timeout: 60_000 })
  const href = await link.getAttribute('href')
  assert.ok(href, 'manifest link has an href')
  const res = await page.request.get(new URL(href, BASE).toString())
  assert.equal(res.status(), 200)
  const manifest = await res.json()
  const sha = findKey(manifest, 'sha256')
  assert.match(String(sha), /^[0-9a-f]{64}$/)
  const clipHref = await page.getByTestId('export-clip-link').first().getAttribute('href')
  const clip = await page.request.head(new URL(clipHref, BASE).toString())
  assert.ok(clip.status() === 200 || clip.status() === 405, `clip answers ${clip.status()}`)
  await screenshot(page, 'export')
  assert.deepEqual(page.problems, [])
})
