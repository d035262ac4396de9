import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { launch, login, newPage, screenshot, settled } from './helpers.mjs'

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

/**
 * Layout of the devices table (in the page): whether it scrolls sideways, and per row the cells whose content
 * does not fit, the columns the fixed actions column covers, and whether the actions wrapped onto a second line.
 */
function gbTableLayout() {
  const table = document.querySelector('[data-testid="gb-table"]')
  const wrap = table.querySelector('.el-table__body-wrapper .el-scrollbar__wrap')
  const heads = [...table.querySelectorAll('.el-table__header-wrapper th')]
  const fixed = heads.find((th) => th.classList.contains('el-table-fixed-column--right'))
  const fixedLeft = fixed.getBoundingClientRect().left
  const covered = heads
    .filter((th) => th !== fixed && th.getBoundingClientRect().right > fixedLeft + 1)
    .map((th) => th.innerText.trim())
  const rows = [...table.querySelectorAll('.el-table__body-wrapper .el-table__row')].map((tr) => {
    const cells = [...tr.querySelectorAll('td .cell')]
    const overflowing = cells.filter((c) => c.scrollWidth > c.clientWidth + 1).map((c) => c.innerText.trim())
    const ops = tr.querySelector('td.gb-ops .cell')
    const tops = new Set([...ops.children].map((b) => Math.round(b.getBoundingClientRect().top)))
    return { text: tr.innerText.replace(/\s+/g, ' '), overflowing, opsLines: tops.size }
  })
  // A header that wrapped is taller than the others.
  const headHeights = heads.map((th) => th.querySelector('.cell').getBoundingClientRect().height)
  const wrapped = heads.filter((th, i) => headHeights[i] > Math.min(...headHeights) + 1).map((th) => th.innerText.trim())
  return { scrolls: wrap.scrollWidth > wrap.clientWidth + 1, covered, wrapped, rows }
}

async function assertReadable(page, width) {
  await page.setViewportSize({ width, height: 900 })
  // The table lays its columns out again after a resize: wait until it spans the new width (less the page's
  // margins) and its columns fill it.
  await page.waitForFunction((w) => {
    const table = document.querySelector('[data-testid="gb-table"]')
    const tableWidth = table.getBoundingClientRect().width
    const wrap = table.querySelector('.el-table__body-wrapper .el-scrollbar__wrap')
    const columns = [...table.querySelectorAll('.el-table__header-wrapper th')].reduce((sum, th) => sum + th.getBoundingClientRect().width, 0)
    return tableWidth > w - 120 && tableWidth < w && columns >= wrap.clientWidth - 2
  }, width)
  const layout = await page.evaluate(gbTableLayout)
  const where = `${width} px: ${JSON.stringify(layout)}`
  assert.equal(layout.scrolls, false, `the table scrolls sideways at ${where}`)
  assert.deepEqual(layout.covered, [], `the actions column covers columns at ${where}`)
  assert.deepEqual(layout.wrapped, [], `column titles wrapped at ${where}`)
  for (const row of layout.rows) {
    assert.deepEqual(row.overflowing, [], `cells cut off at ${where}`)
    assert.equal(row.opsLines, 1, `actions wrapped at ${where}`)
  }
}

// test_console.py's alarm device (serial 2) is admitted and online, and answers DeviceStatus.
test('GB/T 28181 devices: every column readable at 1440 and 1920 px in both languages; 设备状态 shows the device\'s answer; 更多 holds the settings', async () => {
  const page = await newPage(browser)
  await login(page)
  await page.getByTestId('nav-gb').click()
  const row = page.locator('[data-testid="gb-table"] .el-table__row', { hasText: 'e2e 报警设备' })
  await row.getByText('在线').waitFor()
  await assertReadable(page, 1440)
  await screenshot(page, 'gb-devices-1440')
  await assertReadable(page, 1920)
  await screenshot(page, 'gb-devices-1920')

  // DeviceStatus: the device's own answer in a dialog titled with the device.
  await page.setViewportSize({ width: 1440, height: 900 })
  await row.getByTestId('gb-status').click()
  const box = page.locator('.el-message-box')
  await box.waitFor()
  await settled(page)
  const answer = await box.innerText()
  assert.match(answer, /设备状态 · e2e 报警设备/)
  assert.match(answer, /在线：是；工作正常：是；编码：是；录像：否；设备时钟偏差：-?\d+\.\d 秒/)
  await screenshot(page, 'gb-device-status')
  await box.locator('.el-button--primary').click()
  await box.waitFor({ state: 'hidden' })

  // 更多: the settings, e.g. the keepalive prompt, and the catalog tree.
  await row.getByTestId('gb-more').click()
  await page.locator('.el-dropdown-menu:visible [data-testid="gb-keepalive"]').click()
  const prompt = page.locator('.el-message-box')
  await prompt.getByText(/心跳周期（秒/).waitFor()
  await prompt.locator('.el-button:not(.el-button--primary)').click()
  await prompt.waitFor({ state: 'hidden' })
  // Media transport: TCP passive for this device, shown in the menu from then on; then back to the platform's.
  await row.getByTestId('gb-more').click()
  await page.locator('.el-dropdown-menu:visible [data-testid="gb-transport"]').getByText('媒体传输 · 跟随平台设置').click()
  const dialog = page.getByTestId('gb-transport-dialog')
  await dialog.getByText(/NAT/).waitFor()
  await dialog.getByTestId('gb-transport-tcp-passive').click()
  await dialog.locator('.el-radio.is-checked', { hasText: 'TCP 被动' }).waitFor()
  await settled(page)
  await page.waitForTimeout(400) // the radio's own CSS transition, for the picture only
  await screenshot(page, 'gb-transport')
  await dialog.getByTestId('gb-transport-save').click()
  await page.getByText('已保存，下一次点播起生效').waitFor()
  await row.getByTestId('gb-more').click()
  await page.locator('.el-dropdown-menu:visible [data-testid="gb-transport"]').getByText('媒体传输 · TCP 被动（设备连接平台）').click()
  await dialog.getByTestId('gb-transport-default').click()
  await dialog.getByTestId('gb-transport-save').click()
  await dialog.waitFor({ state: 'hidden' })
  await row.getByTestId('gb-more').click()
  await page.locator('.el-dropdown-menu:visible [data-testid="gb-tree-open"]').click()
  await page.getByTestId('gb-tree').locator('.el-tree-node').first().waitFor()
  await page.keyboard.press('Escape')

  // English labels are longer: still readable.
  await page.evaluate(() => localStorage.setItem('vigil.locale', 'en'))
  await page.reload()
  await row.getByText('Online').waitFor()
  await assertReadable(page, 1440)
  await screenshot(page, 'gb-devices-en')
  assert.deepEqual(page.problems, [])
})
