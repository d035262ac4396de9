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

/** PATCH a camera's `enabled` from inside the (logged-in) page. */
async function setEnabled(page, id, enabled) {
  const status = await page.evaluate(
    async ([cameraId, on]) =>
      (
        await fetch(`/api/cameras/${cameraId}`, {
          method: 'PATCH',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ enabled: on }),
        })
      ).status,
    [id, enabled],
  )
  assert.equal(status, 200)
}

test('the tree follows a camera being disabled through the status feed, without loading every camera again', async () => {
  const page = await newPage(browser)
  const calls = { listing: 0, feed: 0 }
  page.on('request', (r) => {
    const path = new URL(r.url()).pathname
    if (path === '/api/cameras') calls.listing++
    if (path === '/api/cameras/status') calls.feed++
  })
  await login(page)
  const online = page.locator('[data-testid="tree-camera"][data-state="online"]').first()
  await online.waitFor({ timeout: 60_000 })
  const id = await online.getAttribute('data-camera-id')
  const node = page.locator(`[data-testid="tree-camera"][data-camera-id="${id}"]`)
  const before = { ...calls }
  await setEnabled(page, id, false)
  try {
    // The feed is asked every 3 s and the server compares states at most every 2 s.
    await page.locator(`[data-testid="tree-camera"][data-camera-id="${id}"][data-state="disabled"]`).waitFor({ timeout: 15_000 })
    assert.ok(calls.feed > before.feed, 'the status feed was asked')
    assert.equal(calls.listing, before.listing, 'a status change alone loads no camera list')
    assert.equal(await node.count(), 1)
    await screenshot(page, 'tree-disabled')
  } finally {
    await setEnabled(page, id, true)
  }
  // Back on: later scenarios want their cameras online again.
  await page.locator(`[data-testid="tree-camera"][data-camera-id="${id}"][data-state="online"]`).waitFor({ timeout: 30_000 })
  assert.deepEqual(page.problems, [])
})
