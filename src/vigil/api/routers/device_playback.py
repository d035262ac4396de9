"""Recordings held on a GB/T 28181 device: list them, play them from the device (docs/api.md "Device recordings").

Both routes call the :class:`CameraGate` first with action ``playback`` (authentication, region scope,
role, audit row), then refuse cameras that are not GB/T 28181 channels (409) — only those have a device
to ask. A device that does not answer is a 504.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from fastapi import APIRouter, Query, Request, WebSocket
from pydantic import BaseModel, ConfigDict
from starlette.requests import HTTPConnection

from vigil.api.contracts import CameraGate
from vigil.api.duplex import serve_duplex
from vigil.api.errors import ERROR_RESPONSES
from vigil.api.routers.recordings import ExportOut, RangeIn
from vigil.api.schemas import ErrorOut
from vigil.domain.errors import Conflict, Invalid, UpstreamTimeout, VigilError
from vigil.gb28181.playback import SCALES, DevicePlayback, PlaybackError, PlaybackTimeout
from vigil.gb28181.records import RecordListing, RecordQueryError, RecordQueryTimeout
from vigil.pipeline import GB28181_SOURCE_KIND
from vigil.playback.device import DeviceViewer, downloaded_units
from vigil.playback.export import create_device_export
from vigil.storage.db import Database
from vigil.storage.models import Camera

log = logging.getLogger(__name__)

#: Widest window one device query may cover (a device answers slowly; the console asks a day at a time).
MAX_DEVICE_WINDOW_US = 31 * 86_400 * 1_000_000
#: Longest range one device playback INVITE asks for.
MAX_PLAYBACK_US = 86_400 * 1_000_000
#: Longest clip one device download may ask for (it is held open until the device has sent it all).
MAX_DOWNLOAD_US = 3_600 * 1_000_000
#: ``a=downloadspeed`` asked of the device (STD22 Annex G; devices offer 1, 2, 4).
DOWNLOAD_SPEED = 4
#: Extra time a download may take beyond range ÷ speed (device start-up, slow disks).
DOWNLOAD_SLACK_S = 30.0


class DeviceRecordsQuerier(Protocol):
    async def query(self, channel_id: str, start: datetime, end: datetime) -> RecordListing: ...


class DevicePlaybackOpener(Protocol):
    async def open(
        self, camera_id: int, channel_id: str, start: int, end: int, *, download_speed: int | None = None
    ) -> DevicePlayback: ...


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeviceRecordingOut(_Model):
    start_us: int
    end_us: int
    name: str | None
    file_path: str | None
    type: str | None
    file_size: int | None


class DeviceRecordingsOut(_Model):
    """What the device listed for the window, sorted by start; ``complete`` false when pages were lost."""

    channel_id: str
    complete: bool
    sum_num: int
    recordings: list[DeviceRecordingOut]


def _detail(**fields: object) -> str:
    return json.dumps(fields, ensure_ascii=False, sort_keys=True)


async def _channel_of(db: Database, camera_id: int) -> str:
    async with db.session() as session:
        camera = await session.get(Camera, camera_id)
    if camera is None or camera.source_kind != GB28181_SOURCE_KIND:
        raise Conflict(f"camera {camera_id} is not a GB/T 28181 channel: it has no device recordings")
    return camera.gb_id


async def _refuse(websocket: WebSocket, exc: Exception) -> None:
    """Say why in an ``error`` text, then close: 1011 when the device did not answer, 1008 otherwise."""
    code = 1011 if isinstance(exc, PlaybackTimeout) else 1008
    await websocket.send_text(json.dumps({"type": "error", "detail": str(exc)}))
    await websocket.close(code=code)


def _window(from_us: int, to_us: int, limit_us: int) -> None:
    if from_us < 0 or to_us <= from_us:
        raise Invalid("to_us: must be after from_us (both ≥ 0)")
    if to_us - from_us > limit_us:
        raise Invalid(f"to_us: a window covers at most {limit_us // 86_400_000_000} days")


def build_device_playback_router(
    db: Database,
    gate: CameraGate,
    records: DeviceRecordsQuerier | None,
    playbacks: DevicePlaybackOpener | None,
    *,
    exports_dir: Path | None = None,
) -> APIRouter:
    """``GET …/device-recordings``, ``WS …/device-playback`` and ``POST …/device-exports`` (when ``exports_dir``);
    ``records``/``playbacks`` None: GB/T 28181 is off."""
    router = APIRouter(
        prefix="/api",
        tags=["recordings"],
        responses={**ERROR_RESPONSES, 504: {"model": ErrorOut, "description": "The device did not answer"}},
    )

    async def checked(conn: HTTPConnection, camera_id: int, detail: str) -> str:
        await gate(conn, camera_id, "playback", detail)
        channel = await _channel_of(db, camera_id)
        if records is None or playbacks is None:
            raise Conflict("GB/T 28181 is not enabled on this node")
        return channel

    @router.get("/cameras/{camera_id}/device-recordings", response_model=DeviceRecordingsOut)
    async def device_recordings(
        request: Request, camera_id: int, from_us: int = Query(), to_us: int = Query()
    ) -> DeviceRecordingsOut:
        """Ask the camera's GB/T 28181 device which recordings it holds in the window (RecordInfo)."""
        channel = await checked(request, camera_id, _detail(from_us=from_us, to_us=to_us, what="device recordings"))
        _window(from_us, to_us, MAX_DEVICE_WINDOW_US)
        assert records is not None
        start = datetime.fromtimestamp(from_us / 1_000_000, UTC)
        end = datetime.fromtimestamp(to_us / 1_000_000, UTC)
        try:
            listing = await records.query(channel, start, end)
        except RecordQueryTimeout as exc:
            raise UpstreamTimeout(str(exc)) from exc
        except RecordQueryError as exc:
            raise Conflict(str(exc)) from exc
        return DeviceRecordingsOut(
            channel_id=listing.channel_id,
            complete=listing.complete,
            sum_num=listing.sum_num,
            recordings=[
                DeviceRecordingOut(
                    start_us=r.start_us,
                    end_us=r.end_us,
                    name=r.name,
                    file_path=r.file_path,
                    type=r.type,
                    file_size=r.file_size,
                )
                for r in listing.recordings
            ],
        )

    if exports_dir is not None:
        target_dir = exports_dir

        @router.post("/cameras/{camera_id}/device-exports", response_model=ExportOut)
        async def device_export(request: Request, camera_id: int, body: RangeIn) -> ExportOut:
            """Download ``start_us``…``end_us`` from the camera's device (INVITE s=Download) into an MP4 export."""
            detail = _detail(start_us=body.start_us, end_us=body.end_us, reason=body.reason, source="device")
            principal = await gate(request, camera_id, "export", detail)
            channel = await _channel_of(db, camera_id)
            if playbacks is None:
                raise Conflict("GB/T 28181 is not enabled on this node")
            _window(body.start_us, body.end_us, MAX_DOWNLOAD_US)
            start, end = body.start_us // 1_000_000, -(-body.end_us // 1_000_000)
            try:
                session = await playbacks.open(camera_id, channel, start, end, download_speed=DOWNLOAD_SPEED)
            except PlaybackTimeout as exc:
                raise UpstreamTimeout(str(exc)) from exc
            except PlaybackError as exc:
                raise Conflict(str(exc)) from exc
            limit = (end - start) / DOWNLOAD_SPEED + DOWNLOAD_SLACK_S
            try:
                async with asyncio.timeout(limit):
                    row = await create_device_export(
                        db,
                        target_dir,
                        camera_id,
                        downloaded_units(session),
                        body.start_us,
                        body.end_us,
                        reason=body.reason,
                        created_by=principal.username,
                        device={"channel_id": channel, "device_id": session.device_id, "speed": DOWNLOAD_SPEED},
                    )
            except TimeoutError as exc:
                raise UpstreamTimeout(f"the device did not finish the download in {limit:.0f} s") from exc
            finally:
                await session.close()
            return ExportOut(
                id=row.id,
                camera_id=row.camera_id,
                start_us=row.start_us,
                end_us=row.end_us,
                bytes=row.bytes,
                sha256=row.sha256,
                download_url=f"/api/exports/{row.id}/clip.mp4",
                manifest_url=f"/api/exports/{row.id}/manifest.json",
            )

    @router.websocket("/cameras/{camera_id}/device-playback")
    async def device_playback(
        websocket: WebSocket, camera_id: int, start_us: int, end_us: int, speed: float = 1.0
    ) -> None:
        await websocket.accept()
        try:
            detail = _detail(start_us=start_us, end_us=end_us, speed=speed, source="device")
            channel = await checked(websocket, camera_id, detail)
            _window(start_us, end_us, MAX_PLAYBACK_US)
            if speed not in SCALES:
                raise Invalid(f"speed: must be one of {', '.join(f'{s:g}' for s in SCALES)}")
            assert playbacks is not None
            session = await playbacks.open(camera_id, channel, start_us // 1_000_000, -(-end_us // 1_000_000))
        except (VigilError, PlaybackError) as exc:
            await _refuse(websocket, exc)
            return
        try:
            if speed != 1.0:
                await session.set_scale(speed)  # the INVITE plays at 1x; the asked speed is a MANSRTSP Scale
        except PlaybackError as exc:
            await session.close()
            await _refuse(websocket, exc)
            return
        viewer = DeviceViewer(session, name=f"device-playback-{camera_id}-{session.key}")

        async def receive() -> None:
            while True:
                text = await websocket.receive_text()
                try:
                    msg = json.loads(text)
                    kind = msg.get("type")
                    if kind == "pause":
                        await viewer.pause()
                    elif kind == "resume":
                        await viewer.resume()
                    elif kind == "seek":
                        await viewer.seek(int(msg["start_us"]))
                    elif kind == "speed":
                        await viewer.set_speed(float(msg["speed"]))
                    else:
                        raise ValueError(f"unknown command {kind!r}")
                except (ValueError, KeyError, TypeError, AttributeError, PlaybackError) as exc:
                    await websocket.send_text(json.dumps({"type": "error", "detail": f"bad command: {exc}"}))

        try:
            await serve_duplex(
                websocket,
                receive,
                viewer.messages(),
                label=f"device playback[{camera_id}]",
                close_at_end=True,
            )
        finally:
            viewer.close()
            await session.close()

    return router
