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

// tests/e2e/test_console.py runs a simulated GB/T 28181 device against the node: it is refused (not admitted)
// and so waits on this page for admission.
test('GB/T 28181 devices: a pending device is highlighted, its refusal on its record, admitted after confirmation', async () => {
  const page = await newPage(browser)
  await login(page)
  await page.getByTestId('nav-gb').click()
  const pending = page.locator('[data-testid="gb-table"] .el-table__row.gb-pending').first()
  for (let i = 0; i < 60 && !(await pending.count()); i++) {
    await page.getByTestId('gb-reload').click()
    await page.waitForTimeout(500)
  }
  await pending.waitFor()
  await screenshot(page, 'gb-devices')
  // Its refusal is on its record: an alarm-level "unauthorised device" event naming its address.
  await pending.getByTestId('gb-events').click()
  const events = page.getByTestId('gb-events-table')
  await events.locator('.el-table__row').first().waitFor()
  const record = await events.innerText()
  assert.match(record, /未授权设备/)
  assert.match(record, /unauthorised device \d{20} from udp:127\.0\.0\.1:\d+/)
  await page.keyboard.press('Escape')
  await events.waitFor({ state: 'hidden' })
  const before = await page.locator('[data-testid="gb-table"] .el-table__row.gb-pending').count()
  await pending.getByTestId('gb-admit').click()
  // The confirmation (lib/confirm.ts) names the device; confirm it.
  const box = page.locator('.el-message-box')
  await box.waitFor()
  assert.match(await box.innerText(), /准入设备 \d{20}/)
  await box.locator('.el-button--primary').click()
  await page.waitForFunction(
    (n) => document.querySelectorAll('[data-testid="gb-table"] .el-table__row.gb-pending').length === n - 1,
    before,
  )
  assert.deepEqual(page.problems, [])
})
