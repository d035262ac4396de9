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
