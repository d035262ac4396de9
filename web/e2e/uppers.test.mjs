import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { launch, login, newPage, screenshot, waitInPage } from './helpers.mjs'

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

  // Delete it through the confirmation.
  await row.getByRole('button', { name: '删除' }).click()
  await page.locator('.el-message-box .el-button--danger').click()
  await row.waitFor({ state: 'detached' })
  assert.deepEqual(page.problems, [])
})
