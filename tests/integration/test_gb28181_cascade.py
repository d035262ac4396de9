"""Vigil-to-Vigil cascade over real sockets: node B (lower, RTSP sim cameras) registers to node A (upper)
exactly as a device would; A's catalog lists exactly what B shares and A streams it live through B's relay;
an unshared channel is refused; B follows A through a restart; B going away takes its cameras offline on A;
A's PTZ on a camera B shares reaches the GB device behind B; A lists B's own recordings and downloads them."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.helpers import eventually, until
from tests.integration.conftest import node_settings
from tests.media import ffprobe_frame_count
from vigil.access.secrets import SecretBox
from vigil.app import Vigil
from vigil.gb28181.media import Gb28181Source
from vigil.gb28181.registrar import BEIJING
from vigil.ingest.errors import StreamNotFound
from vigil.playback.export import verify_export
from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.gb28181.manscdp import (
    DeviceInfoQuery,
    DeviceInfoResponse,
    DeviceStatusQuery,
    DeviceStatusResponse,
    PtzControl,
    RecordInfoQuery,
    RecordInfoResponse,
    Result,
    encode_manscdp,
)
from vigil.protocols.gb28181.ptz import Pan, PtzMove, Tilt
from vigil.protocols.gb28181.ssrc import SsrcAllocator
from vigil.protocols.sip.message import Address, IdGenerator, Via, make_request
from vigil.settings import Settings
from vigil.sim.gb28181 import GbSimOptions, GbSimRunner
from vigil.sim.gb28181 import device_id as sim_device_id
from vigil.storage.models import AuditRow, GbDevice, Segment
from vigil.transport.sip import SipPeer

A_ID = "34020000002000000001"
B_ID = "32010200002000000001"
PASSWORD = "cascade-secret"
SHARED = ["32010201001320000001", "32010201001320000002"]
UNSHARED = "32010201001320000003"


def settings_a(data: Path, sip_port: int = 0) -> Settings:
    return node_settings(
        data,
        sim={"cameras": 0},
        # A records what B shares (a lower platform's channels are otherwise pulled only when watched): these
        # tests follow the relayed stream into A's recordings.
        gb28181={
            "enabled": True,
            "host": "127.0.0.1",
            "port": sip_port,
            "platform_id": A_ID,
            "platform_channel_recording": "always",
        },
    )


def settings_b(data: Path) -> Settings:
    return node_settings(
        data,
        sim={"cameras": 3},
        gb28181={"enabled": True, "host": "127.0.0.1", "port": 0, "platform_id": B_ID},
    )


@asynccontextmanager
async def login(node: Vigil) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=node.url.rstrip("/"), timeout=20) as client:
        r = await client.post("/api/auth/login", json={"username": "admin", "password": node.first_admin_password})
        assert r.status_code == 200, r.text
        yield client


async def admit_lower_platform(node: Vigil, data: Path) -> None:
    """A knows B's platform ID and password in advance, as an admin would enter them for a lower platform."""
    assert node.db is not None
    box = SecretBox.in_data_dir(data)
    async with node.db.session() as session:
        session.add(
            GbDevice(device_id=B_ID, name="Lower B", admitted=True, password_enc=box.encrypt(PASSWORD), created_us=1)
        )


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    a = Vigil(settings_a(tmp_path / "a"))
    b = Vigil(settings_b(tmp_path / "b"))
    state: dict[str, Any] = {"a": a, "b": b}
    try:
        await a.start()
        await admit_lower_platform(a, tmp_path / "a")
        await b.start()
        yield state
    finally:
        for key in ("b", "a"):
            await state[key].close()


async def configure_upper(admin_b: httpx.AsyncClient, a_port: int, transport: str) -> int:
    """On B: A as upper platform, two cameras shared with it, then enabled; returns the upper's ID."""
    cams_b = {c["gb_id"]: c["id"] for c in (await admin_b.get("/api/cameras")).json()}
    assert set(cams_b) == {*SHARED, UNSHARED}
    body = {
        "platform_id": A_ID,
        "domain": A_ID[:10],
        "host": "127.0.0.1",
        "port": a_port,
        "transport": transport,
        "password": PASSWORD,
        "keepalive_interval_s": 1,
        "enabled": False,  # share first, then enable: A reads the catalog as soon as B registers
    }
    r = await admin_b.post("/api/gb/uppers", json=body)
    assert r.status_code == 201, r.text
    upper = int(r.json()["id"])
    r = await admin_b.put(f"/api/gb/uppers/{upper}/shares", json={"camera_ids": [cams_b[g] for g in SHARED]})
    assert r.status_code == 200, r.text
    assert (await admin_b.patch(f"/api/gb/uppers/{upper}", json={"enabled": True})).status_code == 200
    return upper


async def query_b(a: Vigil, b_peer: SipPeer, query: Any, answers: asyncio.Queue[Any]) -> Any:
    """Send a MANSCDP query from A to B and return B's answer MESSAGE (heard by A's registrar)."""
    assert a.gb is not None and a.sip is not None
    ids = IdGenerator(os.urandom)
    request = make_request(
        "MESSAGE",
        f"sip:{B_ID}@127.0.0.1:{b_peer.port}",
        via=Via("UDP", "127.0.0.1", a.sip.udp_port, (("rport", None), ("branch", ids.branch()))),
        from_address=Address(f"sip:{A_ID}@{A_ID[:10]}", params=(("tag", ids.tag()),)),
        to_address=Address(f"sip:{B_ID}@{B_ID[:10]}"),
        call_id=ids.call_id("127.0.0.1"),
        cseq=1,
        body=encode_manscdp(query, tz=BEIJING, charset=Charset.GB2312),
        content_type="Application/MANSCDP+xml",
    )
    response = await a.sip.send_request(request, b_peer)
    assert response.status == 200, response
    async with asyncio.timeout(10):
        while True:
            answer = await answers.get()
            if answer.sn == query.sn:
                return answer


async def gb_cameras(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    return [c for c in (await client.get("/api/cameras")).json() if c["source_kind"] == "gb28181"]


async def test_vigil_cascades_to_vigil(nodes: dict[str, Any], tmp_path: Path) -> None:
    a: Vigil = nodes["a"]
    b: Vigil = nodes["b"]
    assert a.sip is not None and b.sip is not None
    a_port = a.sip.udp_port
    async with login(b) as admin_b, login(a) as admin_a:
        upper = await configure_upper(admin_b, a_port, "udp")

        async def b_state() -> str:
            return str((await admin_b.get(f"/api/gb/uppers/{upper}")).json()["status"]["state"])

        await until(lambda: _eq(b_state(), "registered"), 20, "B registered at A")
        devices = (await admin_a.get("/api/gb/devices")).json()
        assert [(d["device_id"], d["online"]) for d in devices] == [(B_ID, True)]

        # A's catalog of B lists exactly the shared cameras, which become gb28181 cameras on A.
        async def listed() -> list[str]:
            return sorted(c["gb_id"] for c in await gb_cameras(admin_a))

        assert await until(lambda: _eq(listed(), SHARED), 20, "the shared cameras on A") is True
        r = await admin_a.post(f"/api/gb/devices/{B_ID}/catalog")
        assert r.status_code == 200 and r.json()["complete"] and r.json()["cameras_created"] == 0
        assert sorted(c["gb_id"] for c in await gb_cameras(admin_a)) == SHARED

        # A streams them live through B's relay, records them.
        async def all_online() -> bool:
            cams = await gb_cameras(admin_a)
            return len(cams) == 2 and all(c["status"]["state"] == "online" and c["status"]["width"] for c in cams)

        await until(all_online, 40, "A's cascaded cameras online with video")
        cams_a = await gb_cameras(admin_a)
        assert {(c["status"]["width"], c["status"]["height"]) for c in cams_a} == {(768, 576)}

        async def segments() -> int:
            assert a.db is not None
            async with a.db.session() as session:
                ids = [c["id"] for c in cams_a]
                count = await session.scalar(
                    select(func.count()).select_from(Segment).where(Segment.camera_id.in_(ids))
                )
            return int(count or 0)

        await until(segments, 30, "segments recorded on A from the relayed stream")

        assert a.gb is not None
        # A's queries to B (sent on A's SIP server, answers heard through A's registrar) cover what is shared.
        answers: asyncio.Queue[Any] = asyncio.Queue()

        async def heard(device: Any, message: Any, request: Any) -> None:
            answers.put_nowait(message)

        for kind in (DeviceInfoResponse, DeviceStatusResponse, RecordInfoResponse):
            a.gb.registrar.on_message(kind, heard)
        now = datetime.now(UTC)
        b_peer = SipPeer("udp", "127.0.0.1", b.sip.udp_port)
        info = await query_b(a, b_peer, DeviceInfoQuery(sn=501, device_id=B_ID), answers)
        assert isinstance(info, DeviceInfoResponse) and info.result is Result.OK and info.channel == 2
        status = await query_b(a, b_peer, DeviceStatusQuery(sn=502, device_id=SHARED[0]), answers)
        assert isinstance(status, DeviceStatusResponse) and status.online is True
        refused = await query_b(a, b_peer, DeviceStatusQuery(sn=503, device_id=UNSHARED), answers)
        assert isinstance(refused, DeviceStatusResponse) and refused.result is Result.ERROR

        async def recorded_on_b() -> Any:
            query = RecordInfoQuery(
                sn=504, device_id=SHARED[0], start_time=now - timedelta(hours=1), end_time=now + timedelta(hours=1)
            )
            answer = await query_b(a, b_peer, query, answers)
            return answer if isinstance(answer, RecordInfoResponse) and answer.sum_num > 0 else None

        records = await until(recorded_on_b, 30, "B's RecordInfo listing its own recording")
        assert records.items[0].device_id == SHARED[0] and records.items[0].start_time is not None
        hidden = await query_b(
            a,
            b_peer,
            RecordInfoQuery(sn=505, device_id=UNSHARED, start_time=now - timedelta(hours=1), end_time=now),
            answers,
        )
        assert isinstance(hidden, RecordInfoResponse) and hidden.sum_num == 0

        # An unshared channel is refused: A's own INVITE code path gets B's 404.

        class BOwns:
            def owner_of(self, channel_id: str) -> tuple[str, SipPeer] | None:
                return B_ID, b_peer

        source = Gb28181Source(
            999,
            UNSHARED,
            lambda unit: None,
            settings=a.settings.gb28181,
            sip=a.gb.sip,
            owners=BOwns(),
            ssrcs=SsrcAllocator(A_ID[:10]),
        )
        with pytest.raises(StreamNotFound):
            await source.run()
        await source.close()

        assert b.db is not None
        async with b.db.session() as session:
            rows = (await session.scalars(select(AuditRow).where(AuditRow.username == f"gb:{A_ID}"))).all()
        seen = {(r.action, r.target, r.allowed) for r in rows}
        assert ("gb_upper.catalog", f"gb:{B_ID}", True) in seen
        assert ("gb_upper.invite", f"gb:{UNSHARED}", False) in seen
        assert all(("gb_upper.invite", f"gb:{g}", True) in seen for g in SHARED)

    # A restarts (same data, same SIP port): B notices, goes offline, and registers again by itself.
    await a.close()
    async with login(b) as admin_b:

        async def b_status() -> dict[str, Any]:
            return dict((await admin_b.get(f"/api/gb/uppers/{upper}")).json()["status"])

        offline = await until(lambda: _status_is(b_status(), "offline"), 30, "B offline while A is down")
        assert "keepalive" in offline["reason"] or "regist" in offline["reason"]
        a = nodes["a"] = Vigil(settings_a(tmp_path / "a", a_port))
        await a.start()
        await until(lambda: _status_is(b_status(), "registered"), 60, "B registered again after A's restart")
        events = (await admin_b.get(f"/api/gb/uppers/{upper}/events")).json()
        kinds = [e["kind"] for e in reversed(events)]
        assert kinds[:3] == ["registered", "offline", "registered"]

    async with login(a) as admin_a:
        await until(lambda: _eq(_online_devices(admin_a), [B_ID]), 20, "B online at A after its restart")

        # B goes away (it unregisters on the way out): A marks it offline and its cameras stop.
        await b.close()
        await until(lambda: _eq(_online_devices(admin_a), []), 20, "B offline at A")

        async def none_online() -> bool:
            return all(c["status"]["state"] != "online" for c in await gb_cameras(admin_a))

        await until(none_online, 20, "A's cascaded cameras no longer online")


async def _online_devices(client: httpx.AsyncClient) -> list[str]:
    return [d["device_id"] for d in (await client.get("/api/gb/devices")).json() if d["online"]]


async def _eq(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _status_is(status: Any, state: str) -> dict[str, Any] | None:
    value = await status
    return value if value["state"] == state else None


async def test_cascade_signalling_over_tcp(nodes: dict[str, Any]) -> None:
    a: Vigil = nodes["a"]
    assert a.sip is not None
    async with login(nodes["b"]) as admin_b, login(a) as admin_a:
        upper = await configure_upper(admin_b, a.sip.tcp_port, "tcp")

        async def b_state() -> str:
            return str((await admin_b.get(f"/api/gb/uppers/{upper}")).json()["status"]["state"])

        await until(lambda: _eq(b_state(), "registered"), 20, "B registered at A over TCP")
        (device,) = (await admin_a.get("/api/gb/devices")).json()
        assert (device["device_id"], device["online"], device["transport"]) == (B_ID, True, "tcp")

        # A's catalog query and its INVITEs come back over B's connection; the media still flows over UDP.
        async def all_online() -> bool:
            cams = await gb_cameras(admin_a)
            ok = [c for c in cams if c["status"]["state"] == "online" and c["status"]["width"]]
            return sorted(c["gb_id"] for c in cams) == SHARED and len(ok) == 2

        await until(all_online, 40, "A's cascaded cameras online over TCP signalling")
        # Keepalives keep going over the one connection: still registered several intervals later.
        before = (await admin_a.get("/api/gb/devices")).json()[0]["last_keepalive_us"]
        await until(lambda: _later((await_json(admin_a, "/api/gb/devices")), before), 10, "a newer keepalive over TCP")
        assert await b_state() == "registered"


async def await_json(client: httpx.AsyncClient, path: str) -> Any:
    return (await client.get(path)).json()


async def _later(devices: Any, before: int | None) -> bool:
    latest = (await devices)[0]["last_keepalive_us"]
    return latest is not None and (before is None or latest > before)


DEVICE_PASSWORD = "device-secret"


async def test_ptz_from_the_upper_reaches_the_device_behind_the_lower(tmp_path: Path) -> None:
    """A's console PTZ on a camera B shares travels A → B (cascade DeviceControl) → the GB device behind B."""
    a = Vigil(settings_a(tmp_path / "a"))
    b = Vigil(
        node_settings(
            tmp_path / "b",
            sim={"cameras": 0},
            gb28181={
                "enabled": True,
                "host": "127.0.0.1",
                "port": 0,
                "platform_id": B_ID,
                "password": DEVICE_PASSWORD,
            },
        )
    )
    runner: GbSimRunner | None = None
    try:
        await a.start()
        await admit_lower_platform(a, tmp_path / "a")
        await b.start()
        assert a.sip is not None and b.sip is not None and b.db is not None
        sim_id = sim_device_id(B_ID[:10], 1)
        async with b.db.session() as session:
            session.add(GbDevice(device_id=sim_id, admitted=True, created_us=1))
        runner = GbSimRunner(
            GbSimOptions(
                platform_address=("127.0.0.1", b.sip.udp_port),
                password=DEVICE_PASSWORD,
                platform_id=B_ID,
                channels=1,
                ptz_channels=1,
                bind_host="127.0.0.1",
            )
        )
        await runner.start()
        device = runner.devices[0]
        (dome,) = device.channel_ids
        async with login(b) as admin_b, login(a) as admin_a:

            async def on_b() -> list[dict[str, Any]]:
                return [c for c in await gb_cameras(admin_b) if c["gb_id"] == dome]

            (cam_b,) = await until(on_b, 30, "the device's dome catalogued on B")
            body = {
                "platform_id": A_ID,
                "domain": A_ID[:10],
                "host": "127.0.0.1",
                "port": a.sip.udp_port,
                "transport": "udp",
                "password": PASSWORD,
                "keepalive_interval_s": 1,
                "enabled": False,
            }
            r = await admin_b.post("/api/gb/uppers", json=body)
            assert r.status_code == 201, r.text
            upper = int(r.json()["id"])
            r = await admin_b.put(f"/api/gb/uppers/{upper}/shares", json={"camera_ids": [cam_b["id"]]})
            assert r.status_code == 200, r.text
            assert (await admin_b.patch(f"/api/gb/uppers/{upper}", json={"enabled": True})).status_code == 200

            async def on_a() -> list[dict[str, Any]]:
                return [c for c in await gb_cameras(admin_a) if c["gb_id"] == dome]

            (cam_a,) = await until(on_a, 30, "the dome catalogued on A through B")
            r = await admin_a.post(f"/api/cameras/{cam_a['id']}/ptz", json={"action": "up-left", "speed": 100})
            assert r.status_code == 200, r.text
            assert r.json()["accepted"] is True and r.json()["device_id"] == B_ID
            await eventually(lambda: any(isinstance(c.command, PtzControl) for c in device.controls), within=10)
            relayed = [(c.target_id, c.command) for c in device.controls if isinstance(c.command, PtzControl)]
            moved = PtzMove(pan=Pan.LEFT, tilt=Tilt.UP, pan_speed=100, tilt_speed=100)
            assert [(t, c.cmd.instruction) for t, c in relayed] == [(dome, moved)]

            async def audited() -> list[AuditRow]:
                assert b.db is not None
                async with b.db.session() as session:
                    query = select(AuditRow).where(AuditRow.action == "gb_upper.control")
                    return list((await session.scalars(query)).all())

            (row,) = await until(audited, 10, "B's audit row for the relayed control")
            assert (row.username, row.target, row.allowed) == (f"gb:{A_ID}", f"gb:{dome}", True)
            assert "PTZCmd=A50F010A64640087" in row.detail and sim_id in row.detail
    finally:
        if runner is not None:
            await runner.close()
        await b.close()
        await a.close()


async def test_the_upper_vigil_lists_and_downloads_the_lower_vigils_own_recordings(
    nodes: dict[str, Any], tmp_path: Path
) -> None:
    """A treats B as any device: RecordInfo lists B's recordings of a shared camera on A's timeline, and a
    download (INVITE s=Download to B, B relaying its own recording) becomes a verifiable export on A."""
    a: Vigil = nodes["a"]
    b: Vigil = nodes["b"]
    assert a.sip is not None and b.sip is not None and a.gb is not None and b.gb is not None
    async with login(b) as admin_b, login(a) as admin_a:
        upper = await configure_upper(admin_b, a.sip.udp_port, "udp")

        async def b_state() -> str:
            return str((await admin_b.get(f"/api/gb/uppers/{upper}")).json()["status"]["state"])

        await until(lambda: _eq(b_state(), "registered"), 20, "B registered at A")

        async def shared_camera() -> dict[str, Any] | None:
            return next((c for c in await gb_cameras(admin_a) if c["gb_id"] == SHARED[0]), None)

        cam = await until(shared_camera, 20, "B's shared camera on A")
        now_us = int(datetime.now(UTC).timestamp() * 1_000_000)
        window = {"from_us": now_us - 600_000_000, "to_us": now_us + 600_000_000}

        async def listed() -> dict[str, Any] | None:
            r = await admin_a.get(f"/api/cameras/{cam['id']}/device-recordings", params=window)
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            # At least 3 s recorded on B, so a download of 2 s of it lies inside the recording.
            usable = [rec for rec in body["recordings"] if rec["end_us"] - rec["start_us"] >= 3_000_000]
            return body if usable else None

        listing = await until(listed, 40, "B's recordings of the shared camera listed on A")
        assert listing["channel_id"] == SHARED[0] and listing["complete"]
        rec = next(r for r in listing["recordings"] if r["end_us"] - r["start_us"] >= 3_000_000)
        start_us = rec["start_us"] + 500_000
        body = {"start_us": start_us, "end_us": start_us + 2_000_000, "reason": "级联调取下级录像"}
        r = await admin_a.post(f"/api/cameras/{cam['id']}/device-exports", json=body)
        assert r.status_code == 200, r.text
        export = r.json()
        assert export["bytes"] > 0 and export["start_us"] == start_us
        clip, manifest = tmp_path / "clip.mp4", tmp_path / "clip.manifest.json"
        clip.write_bytes((await admin_a.get(export["download_url"])).content)
        manifest.write_bytes((await admin_a.get(export["manifest_url"])).content)
        verdict = verify_export(clip, manifest)
        assert verdict.ok, verdict.problems
        assert ffprobe_frame_count(clip) >= 10  # 2 s of B's 10 fps clip (keyframe lead-in allowed)

        # Both sides let go of the download: no playback on A, no relay session on B.
        await until(lambda: not a.gb.playbacks.sessions, 10, "A's download session to close")
        assert a.gb.ssrcs.in_use(history=True) == 0
        handler = b.gb.cascade.handler(upper)
        assert handler is not None
        # A records both shared cameras, so their live relays stay; the download's history session is gone.
        await until(lambda: handler.media.ssrcs_in_use(history=True) == 0, 15, "B's download relay to end")
        assert handler.sessions == handler.media.ssrcs_in_use(history=False) == 2

    assert b.db is not None
    async with b.db.session() as session:
        rows = (await session.scalars(select(AuditRow).where(AuditRow.username == f"gb:{A_ID}"))).all()
    seen = {(r.action, r.target, r.allowed) for r in rows}
    assert ("gb_upper.record_info", f"gb:{SHARED[0]}", True) in seen
    assert ("gb_upper.invite", f"gb:{SHARED[0]}", True) in seen


async def test_a_shared_virtual_organisation_reaches_the_upper_as_a_group_with_its_channels(tmp_path: Path) -> None:
    """B shares one virtual organisation of the device behind it: A's catalog of B holds just its channels,
    and A's tree of B shows them under that organisation and its business group."""
    a = Vigil(settings_a(tmp_path / "a"))
    b = Vigil(
        node_settings(
            tmp_path / "b",
            sim={"cameras": 0},
            gb28181={"enabled": True, "host": "127.0.0.1", "port": 0, "platform_id": B_ID, "password": DEVICE_PASSWORD},
        )
    )
    runner: GbSimRunner | None = None
    try:
        await a.start()
        await admit_lower_platform(a, tmp_path / "a")
        await b.start()
        assert a.sip is not None and b.sip is not None and b.db is not None
        async with b.db.session() as session:
            session.add(GbDevice(device_id=sim_device_id(B_ID[:10], 1), admitted=True, created_us=1))
        runner = GbSimRunner(
            GbSimOptions(
                platform_address=("127.0.0.1", b.sip.udp_port),
                password=DEVICE_PASSWORD,
                platform_id=B_ID,
                channels=4,
                virtual_orgs=2,
                bind_host="127.0.0.1",
            )
        )
        await runner.start()
        device = runner.devices[0]
        business_group, first_org, _second_org = device.group_ids
        in_first_org = sorted(device.channel_ids[0::2])  # channels alternate between the two organisations
        async with login(b) as admin_b, login(a) as admin_a:

            async def catalogued_on_b() -> bool:
                return len(await gb_cameras(admin_b)) == 4

            await until(catalogued_on_b, 30, "the device's channels catalogued on B")
            groups = (await admin_b.get("/api/gb/uppers/shareable/groups")).json()
            assert {g["node_id"] for g in groups} == set(device.group_ids)
            body = {
                "platform_id": A_ID,
                "domain": A_ID[:10],
                "host": "127.0.0.1",
                "port": a.sip.udp_port,
                "transport": "udp",
                "password": PASSWORD,
                "keepalive_interval_s": 1,
                "enabled": False,
            }
            r = await admin_b.post("/api/gb/uppers", json=body)
            assert r.status_code == 201, r.text
            upper = int(r.json()["id"])
            r = await admin_b.put(f"/api/gb/uppers/{upper}/shares", json={"group_ids": [first_org]})
            assert r.status_code == 200 and r.json()["group_ids"] == [first_org], r.text
            assert (await admin_b.patch(f"/api/gb/uppers/{upper}", json={"enabled": True})).status_code == 200

            async def on_a() -> list[str]:
                return sorted(c["gb_id"] for c in await gb_cameras(admin_a))

            await until(lambda: _eq(on_a(), in_first_org), 30, "the organisation's channels on A")
            tree = (await admin_a.get(f"/api/gb/devices/{B_ID}/tree")).json()["nodes"]
            nodes = {n["id"]: n for n in tree}
            assert nodes[business_group]["kind"] == "business_group"
            assert nodes[first_org]["kind"] == "virtual_organization"
            assert nodes[first_org]["parent_id"] == business_group
            assert _second_org not in nodes
            assert all(nodes[ch]["parent_id"] == first_org for ch in in_first_org)
    finally:
        if runner is not None:
            await runner.close()
        await b.close()
        await a.close()
