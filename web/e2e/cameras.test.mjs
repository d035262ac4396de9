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

test('the camera table lists cameras and the add dialog rejects a GB ID that is not 20 digits', async () => {
  const page = await newPage(browser)
  await login(page)
  await page.getByTestId('nav-cameras').click()
  await page.locator('[data-testid="camera-table"] .el-table__row').first().waitFor()
  await screenshot(page, 'cameras')

  await page.getByTestId('camera-add').click()
  const dialog = page.getByTestId('camera-dialog')
  await page.getByTestId('cam-name').fill('e2e 测试摄像机')
  await page.getByTestId('cam-gbid').fill('3401000000132')
  await page.getByTestId('cam-save').click()
  await page.getByText('国标编号必须为 20 位数字').waitFor()
  await screenshot(page, 'cameras-invalid-gbid')
  // Still open: nothing was sent.
  assert.ok(await dialog.isVisible())
  assert.deepEqual(page.problems, [])
})

test('a recording plan is edited as weekday × time rows and saved with the camera', async () => {
  const page = await newPage(browser)
  await login(page)
  await page.getByTestId('nav-cameras').click()
  const row = page.locator('[data-testid="camera-table"] .el-table__row').first()
  await row.waitFor()
  await row.getByText('编辑').click()
  const dialog = page.getByTestId('camera-dialog')
  await dialog.waitFor()
  await page.getByTestId('cam-mode').getByText('按计划录像').click()
  // A plan camera needs a range: saving without one is refused here (and by the server).
  await page.getByTestId('cam-save').click()
  await page.locator('.el-message', { hasText: '请至少添加一个时段' }).waitFor()
  assert.ok(await dialog.isVisible())
  await page.getByTestId('plan-add').click() // Mon–Fri 08:00–18:00
  await page.getByTestId('plan-add').click()
  const second = page.getByTestId('plan-row-1')
  await second.getByText('六', { exact: true }).click() // now Mon–Sat: overlaps row 1 on Mon–Fri
  await second.getByText('与第 1 行在同一天重叠').waitFor()
  for (const day of ['一', '二', '三', '四', '五']) await second.getByText(day, { exact: true }).click()
  assert.equal(await second.getByText('与第 1 行在同一天重叠').count(), 0)
  await screenshot(page, 'camera-recording-plan')
  await page.getByTestId('cam-save').click()
  await dialog.waitFor({ state: 'hidden' })

  const cameras = await page.evaluate(async () => (await fetch('/api/cameras')).json())
  const planned = cameras.find((c) => c.recording_mode === 'plan')
  assert.ok(planned, 'no camera was saved with recording_mode plan')
  assert.deepEqual(planned.recording_plan, [
    { weekdays: [1, 2, 3, 4, 5], start: '08:00', end: '18:00' },
    { weekdays: [6], start: '08:00', end: '18:00' },
  ])
  // Leave the camera recording always for the other scenarios (live, playback, export).
  const status = await page.evaluate(async (id) => {
    const r = await fetch(`/api/cameras/${id}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ recording_mode: 'always' }),
    })
    return r.status
  }, planned.id)
  assert.equal(status, 200)
  assert.deepEqual(page.problems, [])
})
