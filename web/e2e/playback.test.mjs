import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { clickRecordedRange, launch, login, newPage, pickOnlineCamera, screenshot, waitInPage } from './helpers.mjs'

let browser
before(async () => {
  browser = await launch()
})
after(async () => {
  await browser?.close()
})

test('clicking a recorded range plays it back; 2x sets the playback rate', async () => {
  const page = await newPage(browser)
  await login(page)
  await page.getByTestId('nav-playback').click()
  await pickOnlineCamera(page)
  await clickRecordedRange(page)
  const sel = '[data-testid="pb-player"]'
  const first = await waitInPage(
    page,
    (s) => {
      const v = document.querySelector(`${s} video`)
      return v && v.readyState >= 2 ? { ok: true, t: v.currentTime } : { ok: false }
    },
    sel,
    { timeoutMs: 30_000, what: 'first playback frame' },
  )
  await waitInPage(
    page,
    ({ s, t0 }) => {
      const v = document.querySelector(`${s} video`)
      return { ok: !!v && v.currentTime > t0 + 1 && v.videoWidth > 0, t: v?.currentTime }
    },
    { s: sel, t0: first.t },
    { timeoutMs: 30_000, what: 'playback to advance 1 s' },
  )
  await page.getByTestId('tl-cursor').waitFor()
  await page.getByTestId('speed-2').click()
  const rate = await waitInPage(
    page,
    (s) => {
      const v = document.querySelector(`${s} video`)
      return { ok: v?.playbackRate === 2, rate: v?.playbackRate }
    },
    sel,
    { timeoutMs: 5_000, what: 'playbackRate 2' },
  )
  assert.equal(rate.rate, 2)
  await screenshot(page, 'playback')
  assert.deepEqual(page.problems, [])
})
