import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { launch, login, newPage, screenshot } from './helpers.mjs'

let browser
before(async () => {
  browser = await launch()
})
after(async () => {
  await browser?.close()
})

test('status page shows camera states and a camera integrity figure', async () => {
  const page = await newPage(browser)
  await login(page)
  await page.getByTestId('nav-status').click()
  const row = page.locator('[data-testid="status-table"] .el-table__row').first()
  await row.waitFor()
  await row.click()
  await page.getByTestId('coverage').waitFor()
  // The GB channel sends AAC beside its H.264 (the RTSP sim cameras send no audio).
  const gbRow = page.locator('[data-testid="status-table"] .el-table__row', { hasText: 'Vigil sim NVR CH1' })
  await gbRow.getByText('H264 · AAC').waitFor()
  await screenshot(page, 'status')
  assert.deepEqual(page.problems, [])
})

test('status page: stream figures come from GET /api/cameras/figures, without loading every camera again', async () => {
  const page = await newPage(browser)
  const calls = { listing: 0, figures: 0 }
  page.on('request', (r) => {
    const path = new URL(r.url()).pathname
    if (path === '/api/cameras') calls.listing++
    if (path === '/api/cameras/figures') calls.figures++
  })
  // The answer, with every frame rate set to one no simulated camera has: the table must show it.
  await page.route('**/api/cameras/figures', async (route) => {
    const response = await route.fetch()
    const figures = (await response.json()).map((f) => ({ ...f, fps: 12.5 }))
    await route.fulfill({ response, json: figures })
  })
  await login(page)
  await page.getByTestId('nav-status').click()
  const table = page.getByTestId('status-table')
  await table.locator('.el-table__row').first().waitFor()
  const listed = calls.listing
  await table.locator('.el-table__row').filter({ hasText: '在线' }).first().getByText('12.5', { exact: true }).waitFor()
  assert.ok(calls.figures > 0)
  assert.equal(calls.listing, listed, 'figures alone load no camera list')
  assert.deepEqual(page.problems, [])
})

test('status page: the recording volume against its high-water mark, and the warning when only locked recordings are left', async () => {
  const page = await newPage(browser)
  await login(page)
  await page.getByTestId('nav-status').click()
  const volume = page.getByTestId('storage-volume').first()
  await volume.waitFor()
  assert.match(await volume.innerText(), /已用 .+，可用 .+[\s\S]*高水位 \d+(\.\d+)?%/)
  assert.equal(await page.getByTestId('storage-only-locked').count(), 0)
  // The state retention reports when only evidence-locked recordings are left above the mark: said plainly.
  await page.route('**/api/system', async (route) => {
    const response = await route.fetch()
    const info = await response.json()
    await route.fulfill({ response, json: { ...info, volumes: info.volumes.map((v) => ({ ...v, only_locked_left: true })) } })
  })
  await page.reload()
  await page.getByTestId('storage-only-locked').waitFor()
  assert.match(await page.getByTestId('storage-only-locked').innerText(), /只剩证据锁定的录像/)
  await screenshot(page, 'status-storage-locked')
  assert.deepEqual(page.problems, [])
})

test('users and audit pages (admin) load; the audit chain verifies', async () => {
  const page = await newPage(browser)
  await login(page)
  await page.getByTestId('nav-users').click()
  await page.locator('[data-testid="user-table"] .el-table__row').first().waitFor()
  await screenshot(page, 'users')
  await page.getByTestId('nav-audit').click()
  await page.locator('[data-testid="audit-table"] .el-table__row').first().waitFor()
  await page.getByTestId('audit-verify').click()
  await page.getByTestId('audit-verdict').waitFor()
  assert.match(await page.getByTestId('audit-verdict').innerText(), /日志链完整/)
  // Actions read as words: this session's own login row is the newest.
  assert.equal(await page.getByTestId('audit-action').first().innerText(), '登录')
  await screenshot(page, 'audit')
  // An auditor's filter: only the admin's logins, and paging stays within it.
  await page.getByTestId('audit-filter-target').fill('user:admin')
  await page.getByTestId('audit-search').click()
  await page.waitForFunction(() => {
    const cells = [...document.querySelectorAll('[data-testid="audit-table"] .el-table__row td:nth-child(6)')]
    return cells.length > 0 && cells.every((c) => c.textContent.trim() === 'user:admin')
  })
  // Logins, the first admin's creation and its password change: all about user:admin, all in words.
  const actions = await page.getByTestId('audit-action').allInnerTexts()
  assert.ok(actions.includes('登录') && actions.includes('用户·新增'), actions.join(','))
  await page.locator('[data-testid="audit-table"] .el-loading-mask').waitFor({ state: 'hidden' })
  await screenshot(page, 'audit-filtered')
  assert.deepEqual(page.problems, [])
})
