import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { launch, login, newPage, screenshot, waitInPage } from './helpers.mjs'

// tests/e2e/test_console.py registers a simulated GB/T 28181 device that has raised two alarms: one on its
// channel (priority 1, video analysis, intrusion entering, "周界入侵") and one of its own (priority 3,
// device, video loss, "视频丢失"). The simulator stays up, so a reset reaches it and it answers.
let browser
before(async () => {
  browser = await launch()
})
after(async () => {
  await browser?.close()
})

test('alarms: the two device alarms are listed in Chinese, and a reset reaches the device', async () => {
  const page = await newPage(browser)
  await login(page)
  await page.getByTestId('nav-alarms').click()
  await page.waitForURL(/\/alarms/)
  const table = page.getByTestId('alarms-table')
  const channelRow = table.locator('.el-table__body-wrapper .el-table__row', { hasText: '周界入侵' })
  const deviceRow = table.locator('.el-table__body-wrapper .el-table__row', { hasText: '视频丢失' })
  await channelRow.waitFor()
  await deviceRow.waitFor()

  const channelText = await channelRow.innerText()
  assert.match(channelText, /一级/)
  assert.match(channelText, /视频分析报警/)
  assert.match(channelText, /入侵检测报警（进入区域）/)
  assert.match(channelText, /未复位/)
  const deviceText = await deviceRow.innerText()
  assert.match(deviceText, /三级/)
  assert.match(deviceText, /设备报警/)
  assert.match(deviceText, /视频丢失报警/)
  assert.match(deviceText, /设备本身/)
  // The channel alarm belongs to the GB camera the catalog created: its name, not the device.
  const alarms = await waitInPage(
    page,
    async () => {
      const body = await (await fetch('/api/gb/alarms')).json()
      return body.total >= 2 ? { ok: true, ...body } : body
    },
    undefined,
    { what: 'two alarms over the API' },
  )
  const channelAlarm = alarms.items.find((a) => a.description === '周界入侵')
  assert.ok(channelAlarm.camera_id !== null)
  const camera = await page.evaluate(async (id) => (await fetch(`/api/cameras/${id}`)).json(), channelAlarm.camera_id)
  assert.match(channelText, new RegExp(camera.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
  await screenshot(page, 'alarms')

  // Reset through the confirmation: the device accepts, the row shows who reset it and the button goes.
  await page.getByTestId(`alarm-reset-${channelAlarm.id}`).click()
  await page.locator('.el-message-box .el-button--primary').click()
  await page.locator('.el-message--success', { hasText: '设备已接受复位' }).waitFor()
  await channelRow.getByText('已复位').waitFor()
  assert.match(await channelRow.innerText(), /admin/)
  assert.equal(await page.getByTestId(`alarm-reset-${channelAlarm.id}`).count(), 0)
  const after = await page.evaluate(async () => (await fetch('/api/gb/alarms')).json())
  const reset = after.items.find((a) => a.id === channelAlarm.id)
  assert.equal(reset.reset_by, 'admin')
  assert.ok(reset.reset_us > 0)
  // The device's own alarm is untouched.
  assert.match(await deviceRow.innerText(), /未复位/)

  // The camera's links open it on the playback page (on the alarm's day) and in a live cell.
  await channelRow.getByTestId('alarm-playback').click()
  await page.waitForURL(/\/playback\?camera=/)
  await page.getByTestId('pb-camera').getByText(camera.name, { exact: true }).waitFor()
  await page.goBack()
  await channelRow.getByTestId('alarm-live').click()
  await page.waitForURL(/\/live\?camera=/)
  await page.locator(`[data-testid="live-cell"][data-camera-id="${camera.id}"]`).waitFor()
  // The channel also reported where it is (test_console.py: five reports heading north-east): the track
  // and the latest figures show beside its picture.
  await page.getByTestId('position-panel').waitFor()
  const latest = await page.getByTestId('position-latest').innerText()
  assert.match(latest, /经度\s*117\.201600/)
  assert.match(latest, /纬度\s*31\.801200/)
  assert.match(latest, /速度\s*24\.0 km\/h/)
  assert.match(latest, /上报次数\s*5/)
  const points = await page.getByTestId('position-track').locator('polyline').getAttribute('points')
  assert.equal(points.trim().split(/\s+/).length, 5)
  await screenshot(page, 'positions')
  // The channel is a dome: its PTZ pad starts cruise group 2 (0x88, A.3.5) and the device takes it.
  await page.getByTestId('ptz-pad').waitFor()
  const group = page.getByTestId('ptz-group').locator('input')
  await group.fill('2')
  await group.press('Tab') // el-input-number takes the value on change
  await page.getByTestId('ptz-cruise-start').click()
  await page.getByTestId('ptz-last').getByText('设备已接受 A50F01880200003F').waitFor()
  // Setting up cruise group 3 and a scan in group 3: preset 4 as a cruise point, speed/dwell/scan speed 300
  // (12 bits: 0x12C). Each button's command is shown as the device accepted it (no two in a row alike, so
  // each wait sees its own answer); test_console.py checks the device received these, in this order.
  await fillNumber(page, 'ptz-group', 3)
  await fillNumber(page, 'ptz-preset', 4)
  await fillNumber(page, 'ptz-value', 300)
  const steps = [
    ['ptz-cruise-add-point', ptzHex(0x84, 3, 4, 0)],
    ['ptz-cruise-speed', ptzHex(0x86, 3, 0x2c, 1)],
    ['ptz-cruise-dwell', ptzHex(0x87, 3, 0x2c, 1)],
    ['ptz-cruise-delete-point', ptzHex(0x85, 3, 4, 0)],
    ['ptz-cruise-stop', ptzHex(0, 0, 0, 0)],
    ['ptz-scan-set-left', ptzHex(0x89, 3, 1, 0)],
    ['ptz-scan-set-right', ptzHex(0x89, 3, 2, 0)],
    ['ptz-scan-speed', ptzHex(0x8a, 3, 0x2c, 1)],
    ['ptz-scan-start', ptzHex(0x89, 3, 0, 0)],
    ['ptz-scan-stop', ptzHex(0, 0, 0, 0)],
  ]
  for (const [button, hex] of steps) {
    await page.getByTestId(button).click()
    await page.getByTestId('ptz-last').getByText(`设备已接受 ${hex}`, { exact: true }).waitFor()
  }
  await screenshot(page, 'ptz-scan')
  await page.goBack()
  await channelRow.waitFor()

  // Filtered to a camera without alarms (one of the RTSP cameras): the empty-state text.
  await page.getByTestId('alarms-camera').click()
  await page.locator('.el-select-dropdown__item:visible').filter({ hasNotText: camera.name }).first().click()
  await table.getByText('所选时间范围内没有报警').waitFor()
  await page.getByTestId('alarms-pager').getByText('共 0 条').waitFor()
  assert.deepEqual(page.problems, [])
})

test('alarms: a viewer sees the alarms but no reset and no playback link', async () => {
  const admin = await newPage(browser)
  await login(admin)
  const status = await admin.evaluate(async () => {
    const r = await fetch('/api/users', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username: 'alarm-viewer', password: 'e2e-Viewer-Passw0rd', role: 'viewer' }),
    })
    return r.status
  })
  assert.equal(status, 201)
  const page = await newPage(browser)
  await login(page, { user: 'alarm-viewer', password: 'e2e-Viewer-Passw0rd' })
  await page.getByTestId('nav-alarms').click()
  const table = page.getByTestId('alarms-table')
  const deviceRow = table.locator('.el-table__body-wrapper .el-table__row', { hasText: '视频丢失' })
  const channelRow = table.locator('.el-table__body-wrapper .el-table__row', { hasText: '周界入侵' })
  await deviceRow.waitFor()
  await channelRow.waitFor()
  assert.match(await deviceRow.innerText(), /未复位/)
  assert.equal(await table.locator('button[data-testid^="alarm-reset-"]').count(), 0)
  assert.equal(await channelRow.getByTestId('alarm-live').count(), 1)
  assert.equal(await channelRow.getByTestId('alarm-playback').count(), 0)
  assert.deepEqual(page.problems, [])
})

/** Type a number into an el-input-number (it takes the value on change, hence the Tab). */
async function fillNumber(page, testId, value) {
  const input = page.getByTestId(testId).locator('input')
  await input.fill(String(value))
  await input.press('Tab')
}

/** The PTZCmd (GB/T 28181 A.3) the device at address 1 gets for instruction `code`: 8 bytes as hex, checksum last. */
function ptzHex(code, data1, data2, data3) {
  const bytes = [0xa5, 0x0f, 0x01, code, data1, data2, data3 << 4]
  bytes.push(bytes.reduce((a, b) => a + b, 0) & 0xff)
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join('').toUpperCase()
}
