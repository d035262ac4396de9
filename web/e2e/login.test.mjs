import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { BASE, launch, login, newPage, screenshot } from './helpers.mjs'

let browser
before(async () => {
  browser = await launch()
})
after(async () => {
  await browser?.close()
})

test('login page is in Chinese by default and rejects a wrong password', async () => {
  const page = await newPage(browser)
  await page.goto(`${BASE}/login`)
  await page.getByText('用户登录').waitFor()
  await page.getByText('Vigil 视频监控联网平台').first().waitFor()
  await screenshot(page, 'login-zh')
  await page.getByTestId('login-username').fill('nobody-here')
  await page.getByTestId('login-password').fill('definitely-wrong')
  await page.getByTestId('login-submit').click()
  await page.getByTestId('login-error').waitFor()
  assert.match(await page.getByTestId('login-error').innerText(), /用户名或密码错误|锁定/)
  assert.deepEqual(page.problems, [])
})

test('after login the console shows Chinese; switching to English sticks across a reload', async () => {
  const page = await newPage(browser)
  await login(page)
  // textContent: the name is laid out in two parts (the second gives way on a narrow header).
  assert.equal((await page.getByTestId('product-name').textContent()).trim(), 'Vigil 视频监控联网平台')
  await page.getByTestId('nav-live').getByText('实时预览').waitFor()
  await page.getByTestId('nav-cameras').getByText('设备管理').waitFor()
  await page.getByText('退出登录').waitFor()

  await page.getByTestId('lang-switch').click()
  await page.locator('.el-select-dropdown__item', { hasText: 'English' }).click()
  await page.getByTestId('nav-live').getByText('Live view').waitFor()
  await page.getByText('Log out').waitFor()
  assert.equal(await page.evaluate(() => localStorage.getItem('vigil.locale')), 'en')
  await page.reload()
  await page.getByTestId('nav-cameras').getByText('Devices').waitFor()
  // The longer English labels still fit the 1440 px header: navigation and tools side by side, not overlapping.
  const header = await page.evaluate(() => {
    const box = (el) => el.getBoundingClientRect()
    const items = [...document.querySelectorAll('.nav-item')].map(box)
    const tools = box(document.querySelector('.tools'))
    return { navRight: Math.max(...items.map((b) => b.right)), toolsLeft: tools.left, toolsRight: tools.right, width: innerWidth }
  })
  assert.ok(header.navRight <= header.toolsLeft, JSON.stringify(header))
  assert.ok(header.toolsRight <= header.width, JSON.stringify(header))
  await screenshot(page, 'live-en')
  assert.deepEqual(page.problems, [])
})
