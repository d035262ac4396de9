"""Real headless Chromium accepts the live stream through Media Source Extensions and shows frames."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from playwright.async_api import async_playwright
from starlette.requests import HTTPConnection
from tests.media import SAMPLE_576

from vigil.api.contracts import CameraAction, Principal
from vigil.domain.media import AccessUnit
from vigil.ingest.file import iter_file_units
from vigil.live.router import build_live_router
from vigil.streams.hub import HubRegistry

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--autoplay-policy=no-user-gesture-required",
]

# The console's live player in miniature: MSE, one SourceBuffer, append queue, errors recorded.
PAGE = """<!doctype html><video id=v muted autoplay playsinline></video><script>
window.state = {texts: [], appended: 0, errors: []};
const video = document.getElementById('v');
const ms = new MediaSource();
video.src = URL.createObjectURL(ms);
video.onerror = () => state.errors.push('video: ' + (video.error && video.error.message));
const queue = []; let sb = null;
function pump() { if (sb && !sb.updating && queue.length) { sb.appendBuffer(queue.shift()); } }
ms.addEventListener('sourceopen', () => {
  const ws = new WebSocket(`ws://${location.host}/api/cameras/5/live`);
  ws.binaryType = 'arraybuffer';
  ws.onmessage = (ev) => {
    if (typeof ev.data === 'string') {
      const msg = JSON.parse(ev.data); state.texts.push(msg);
      if (msg.type === 'init' && !sb) {
        state.supported = MediaSource.isTypeSupported(msg.mime);
        sb = ms.addSourceBuffer(msg.mime);
        sb.addEventListener('updateend', () => { state.appended++; pump(); });
        sb.addEventListener('error', () => state.errors.push('sourcebuffer error'));
      }
    } else { queue.push(ev.data); pump(); }
  };
});
</script>"""


class AllowAll:
    async def __call__(self, conn: HTTPConnection, camera_id: int, action: CameraAction, detail: str = "") -> Principal:
        return Principal(1, "tester", "viewer", None, "127.0.0.1")


async def _until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - polling state owned by the server under test
            await asyncio.sleep(0.01)


@pytest.mark.e2e
async def test_chromium_mse_plays_live_h264() -> None:
    units: list[AccessUnit] = []
    for unit in iter_file_units(SAMPLE_576, start_wallclock=0.0):
        units.append(unit)
        if len(units) == 60:
            break
    hubs = HubRegistry()
    app = FastAPI()
    app.include_router(build_live_router(hubs, AllowAll()))
    app.get("/")(lambda: HTMLResponse(PAGE))
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(uv.serve())
    await _until(lambda: uv.started)
    port = uv.servers[0].sockets[0].getsockname()[1]
    hub = hubs.get("5")
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{port}/")
            await _until(lambda: len(hub.readers()) == 1)
            for unit in units:  # paced like a 10 fps camera, a little faster
                hub.publish(replace(unit, received_mono=time.monotonic()))
                await asyncio.sleep(0.02)
            await page.wait_for_function("state.appended >= 40", timeout=10_000)
            await page.wait_for_function(
                "document.getElementById('v').getVideoPlaybackQuality().totalVideoFrames > 0", timeout=10_000
            )
            state = await page.evaluate("state")
            buffered = await page.evaluate("document.getElementById('v').buffered.length")
            await browser.close()
    finally:
        uv.should_exit = True
        await asyncio.wait_for(serving, 10)
    assert state["supported"] is True
    assert state["errors"] == []
    assert state["texts"][0]["codec"] == "h264"
    assert buffered == 1  # one continuous range: fragment timestamps line up with no gaps
