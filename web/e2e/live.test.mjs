import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { launch, login, newPage, pickOnlineCamera, screenshot, videoState, waitInPage } from './helpers.mjs'

let browser
before(async () => {
  browser = await launch()
})
after(async () => {
  await browser?.close()
})

test('a camera clicked in the tree plays live in the selected grid cell', async () => {
  const page = await newPage(browser)
  await login(page)
  await page.getByTestId('grid-4').click()
  const id = await pickOnlineCamera(page)
  const cell = `[data-testid="live-cell"][data-camera-id="${id}"]`
  await page.locator(cell).waitFor()
  const playing = await waitInPage(
    page,
    (sel) => {
      const v = document.querySelector(`${sel} video`)
      const s = v ? { currentTime: v.currentTime, videoWidth: v.videoWidth } : {}
      return { ok: !!v && v.currentTime > 1 && v.videoWidth > 0, ...s }
    },
    cell,
    { timeoutMs: 45_000, what: 'live video to advance past 1 s' },
  )
  assert.ok(playing.videoWidth > 0)
  // The cell header names the camera and its state; the "connecting" overlay is gone once frames flow.
  assert.equal(await page.locator(`${cell} [data-testid="player-overlay"]`).count(), 0)
  await screenshot(page, 'live')
  const s = await page.evaluate(videoState, cell)
  assert.ok(s.currentTime > 1)
  // 1/9/16 layouts: as many cells as the layout says, and the playing camera keeps its cell.
  for (const n of [9, 16, 1]) {
    await page.getByTestId(`grid-${n}`).click()
    await page.waitForFunction((k) => document.querySelectorAll('[data-testid="live-cell"]').length === k, n)
    assert.equal(await page.locator(cell).count(), 1, `layout ${n} shows the playing camera`)
  }
  assert.deepEqual(page.problems, [])
})
