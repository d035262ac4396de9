"""Real headless Chromium accepts the live stream through Media Source Extensions and shows frames."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from playwright.async_api import async_playwright
from starlette.requests import HTTPConnection
from tests.helpers import eventually, serve
from tests.media import SAMPLE_576, first_units

from vigil.api.contracts import CameraAction, Principal
from vigil.live.router import build_live_router
from vigil.protocols.ps import AudioFrame
from vigil.protocols.ps.audio import PsAudioFramer
from vigil.sim.audio import SimAudio, make_audio_clip
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


@pytest.mark.e2e
async def test_chromium_mse_plays_live_h264() -> None:
    units = first_units(SAMPLE_576, 60)
    hubs = HubRegistry()
    app = FastAPI()
    app.include_router(build_live_router(hubs, AllowAll()))
    app.get("/")(lambda: HTMLResponse(PAGE))
    hub = hubs.get("5")
    async with serve(app) as port, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(f"http://127.0.0.1:{port}/")
        await eventually(lambda: len(hub.readers()) == 1, within=10.0, interval=0.01)
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
    assert state["supported"] is True
    assert state["errors"] == []
    assert state["texts"][0]["codec"] == "h264"
    assert buffered == 1  # one continuous range: fragment timestamps line up with no gaps


@pytest.mark.e2e
async def test_chromium_mse_plays_live_h264_with_aac() -> None:
    units = first_units(SAMPLE_576, 60)
    clip = make_audio_clip(SimAudio.AAC, 6.0)
    assert clip is not None
    framer = PsAudioFramer()
    base = units[0].dts
    audio = [a for off, p in clip.packets for a in framer.units(AudioFrame(0xC0, clip.stream_type, base + off, p))]
    hubs = HubRegistry()
    app = FastAPI()
    app.include_router(build_live_router(hubs, AllowAll()))
    app.get("/")(lambda: HTMLResponse(PAGE))
    hub = hubs.get("5")
    hub.publish_audio(audio[0])  # the camera is known to send AAC before the viewer comes
    async with serve(app) as port, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(f"http://127.0.0.1:{port}/")
        await eventually(lambda: len(hub.readers()) == 1, within=10.0, interval=0.01)
        pending = iter(audio[1:])
        next_audio = next(pending, None)
        for unit in units:  # paced like a 10 fps camera, a little faster, audio interleaved by time
            while next_audio is not None and next_audio.pts <= unit.dts:
                hub.publish_audio(next_audio)
                next_audio = next(pending, None)
            hub.publish(replace(unit, received_mono=time.monotonic()))
            await asyncio.sleep(0.02)
        await page.wait_for_function("state.appended >= 80", timeout=10_000)
        await page.wait_for_function("document.getElementById('v').webkitAudioDecodedByteCount > 0", timeout=10_000)
        state = await page.evaluate("state")
        ranges = await page.evaluate(
            "(() => { const b = document.getElementById('v').buffered;"
            " return Array.from({length: b.length}, (_, i) => [b.start(i), b.end(i)]); })()"
        )
        await browser.close()
    assert state["supported"] is True
    assert state["errors"] == []
    assert state["texts"][0]["mime"].endswith('mp4a.40.2"') and state["texts"][0]["audio"] == "aac"
    # Both tracks line up: one continuous range (the intersection of the video's and the audio's) of most of 6 s.
    assert len(ranges) == 1 and ranges[0][1] - ranges[0][0] > 4.0
