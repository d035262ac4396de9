import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { launch, login, newPage, screenshot, settled, waitInPage } from './helpers.mjs'

const PLATFORM_ID = '11000000002000000099'

let browser
before(async () => {
  browser = await launch()
})
after(async () => {
  await browser?.close()
})

test('upper platforms: add one, share a region, see it listed, delete it', async () => {
  const page = await newPage(browser)
  await login(page)
  await page.getByTestId('nav-uppers').click()
  await page.getByTestId('upper-table').waitFor()

  // Add (disabled: nothing listens at the address), with a password that is never shown again.
  await page.getByTestId('upper-add').click()
  await page.getByTestId('upper-platform-id').fill(PLATFORM_ID)
  await page.getByTestId('upper-name').fill('市级平台')
  await page.getByTestId('upper-host').fill('192.0.2.10')
  await page.getByTestId('upper-password').fill('upper-secret')
  await page.getByTestId('upper-save').click()
  const row = page.locator('[data-testid="upper-table"] .el-table__row', { hasText: PLATFORM_ID })
  await row.waitFor()
  assert.match(await row.innerText(), /市级平台/)
  assert.match(await row.innerText(), /192\.0\.2\.10:5060/)
  const { upper } = await waitInPage(
    page,
    async (id) => {
      const list = await (await fetch('/api/gb/uppers')).json()
      const found = list.find((u) => u.platform_id === id)
      return found ? { ok: true, upper: found } : null
    },
    PLATFORM_ID,
    { what: 'the new upper platform over the API' },
  )
  assert.equal(upper.has_password, true)
  assert.equal('password' in upper, false)

  // Share the first region of the tree.
  await page.getByTestId(`upper-shares-${PLATFORM_ID}`).click()
  const tree = page.getByTestId('share-region-tree')
  await tree.locator('.el-tree-node').first().waitFor()
  await tree.locator('.el-tree-node__content .el-checkbox').first().click()
  await page.getByTestId('shares-save').click()
  const shares = await waitInPage(
    page,
    async (id) => {
      const s = await (await fetch(`/api/gb/uppers/${id}/shares`)).json()
      return s.region_codes.length === 1 ? { ok: true, ...s } : s
    },
    upper.id,
    { what: 'the region share saved' },
  )
  assert.equal(shares.region_codes.length, 1)
  await page.getByTestId('shares-dialog').waitFor({ state: 'hidden' })
  await screenshot(page, 'uppers')

  // Share a business group from a device's catalog too (test_console.py's alarm device announces one, with a
  // virtual organisation under it): picked by its kind in the group picker.
  await page.getByTestId(`upper-shares-${PLATFORM_ID}`).click()
  await page.getByTestId('share-region-tree').locator('.el-tree-node.is-checked').first().waitFor()
  await page.getByTestId('share-groups').click()
  const option = page.locator('.el-select-dropdown__item:visible', { hasText: '业务分组' }).first()
  const groupLabel = (await option.locator('span').first().innerText()).trim()
  const groupId = groupLabel.match(/（(\d{20})）$/)[1]
  await option.click()
  await page.getByTestId('shares-dialog').getByText('共享业务分组 / 虚拟组织').click() // closes the picker
  await page.locator('.el-dialog:visible').getByText('已选 1 个区划、1 个分组、0 路摄像机').waitFor()
  await page.getByTestId('shares-save').click()
  await page.getByTestId('shares-dialog').waitFor({ state: 'hidden' })
  // Opened again, the dialog shows the group as shared (a tag in the picker) beside the region.
  await page.getByTestId(`upper-shares-${PLATFORM_ID}`).click()
  const picked = page.getByTestId('share-groups').locator('.el-tag')
  await picked.getByText(groupLabel).waitFor()
  assert.equal(await picked.count(), 1)
  await page.locator('.el-dialog:visible').getByText('已选 1 个区划、1 个分组、0 路摄像机').waitFor()
  await settled(page)
  await screenshot(page, 'uppers-shared-group')
  const saved = await page.evaluate(async (id) => (await fetch(`/api/gb/uppers/${id}/shares`)).json(), upper.id)
  assert.deepEqual(saved.group_ids, [groupId])
  assert.equal(saved.region_codes.length, 1)
  await page.locator('.el-dialog:visible .el-dialog__headerbtn').click()
  await page.getByTestId('shares-dialog').waitFor({ state: 'hidden' })

  // Delete it through the confirmation.
  await row.getByRole('button', { name: '删除' }).click()
  await page.locator('.el-message-box .el-button--danger').click()
  await row.waitFor({ state: 'detached' })
  assert.deepEqual(page.problems, [])
})
