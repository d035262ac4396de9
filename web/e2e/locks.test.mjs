import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { BASE, clickRecordedRange, launch, login, newPage, pickOnlineCamera, screenshot } from './helpers.mjs'

let browser
before(async () => {
  browser = await launch()
})
after(async () => {
  await browser?.close()
})

test('an evidence lock on the selected range needs a reason, shows in the list and on the timeline, and can be released', async () => {
  const page = await newPage(browser)
  await login(page)
  await page.getByTestId('nav-playback').click()
  const cameraId = await pickOnlineCamera(page)
  // Clicking a recorded range fills the export form's start/end pickers, which the lock uses too.
  await clickRecordedRange(page)
  assert.notEqual(await page.getByTestId('export-start').locator('input').inputValue(), '')
  assert.notEqual(await page.getByTestId('export-end').locator('input').inputValue(), '')
  await page.getByTestId('lock-list').waitFor()

  // A unique reason so the test finds its own row even on a node that already holds locks.
  const reason = `e2e 证据锁定 ${Date.now()}`
  const row = page.getByTestId('lock-row').filter({ hasText: reason })
  const rowsBefore = await page.getByTestId('lock-row').count()

  // No reason: refused in the console, nothing created.
  await page.getByTestId('lock-create').click()
  await page.getByText('请填写调阅事由').first().waitFor()
  assert.equal(await page.getByTestId('lock-row').count(), rowsBefore)

  await page.getByTestId('export-reason').fill(reason)
  await page.getByTestId('lock-create').click()
  await row.waitFor()
  assert.equal(await page.getByTestId('lock-row').count(), rowsBefore + 1)
  assert.match(await row.innerText(), /admin/)
  const lockId = await row.getAttribute('data-lock-id')
  assert.ok(lockId, 'the row carries its lock id')

  // The server holds it for this camera.
  const listed = await (await page.request.get(`${BASE}/api/cameras/${cameraId}/locks`)).json()
  const held = listed.find((l) => String(l.id) === lockId)
  assert.ok(held, 'the API lists the new lock')
  assert.equal(held.reason, reason)
  assert.ok(held.end_us > held.start_us)

  // Drawn on the timeline; hovering the band names the reason.
  const band = page.locator(`[data-testid="tl-lock"][data-lock-id="${lockId}"] rect.tl-lock`)
  await band.waitFor()
  await band.hover()
  assert.match(await page.getByTestId('tl-lock-hover').innerText(), new RegExp(reason))
  await screenshot(page, 'locks')

  // Release it: a confirmation first; cancelling keeps it.
  await row.getByTestId('lock-delete').click()
  const box = page.locator('.el-message-box')
  await box.waitFor()
  await box.getByRole('button', { name: '取消' }).click()
  await box.waitFor({ state: 'hidden' })
  assert.equal(await row.count(), 1)

  await row.getByTestId('lock-delete').click()
  await box.waitFor()
  await box.getByRole('button', { name: '解除锁定' }).click()
  await row.waitFor({ state: 'detached' })
  await page.locator(`[data-testid="tl-lock"][data-lock-id="${lockId}"]`).waitFor({ state: 'detached' })
  assert.equal(await page.getByTestId('lock-row').count(), rowsBefore)
  const remaining = await (await page.request.get(`${BASE}/api/cameras/${cameraId}/locks`)).json()
  assert.ok(!remaining.some((l) => String(l.id) === lockId), 'the API no longer lists the lock')
  assert.deepEqual(page.problems, [])
})
