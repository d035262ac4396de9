"""Hypothesis fuzz of what an upper platform can send the cascade handler: a clear answer, never a crash or leak."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.gb28181.cascade.conftest import BEIJING_TZ, OUR_ID, SHARED, UPPER, UPPER_ID, build_rig, request_from_upper
from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.gb28181.manscdp import (
    CatalogQuery,
    DeviceInfoQuery,
    DeviceStatusQuery,
    RecordInfoQuery,
    encode_manscdp,
)
from vigil.protocols.sdp import GbTransport, gb_description

T0 = datetime(2026, 3, 1, tzinfo=UTC)
MESSAGE_SEEDS = [
    encode_manscdp(m, tz=BEIJING_TZ, charset=Charset.GB2312)
    for m in (
        CatalogQuery(sn=1, device_id=OUR_ID),
        DeviceInfoQuery(sn=2, device_id=SHARED),
        DeviceStatusQuery(sn=3, device_id=SHARED),
        RecordInfoQuery(sn=4, device_id=SHARED, start_time=T0, end_time=T0.replace(hour=1)),
    )
]
SDP_SEEDS = [
    gb_description(
        session_name=name,
        owner_id=UPPER_ID,
        address="127.0.0.1",
        port=9,
        transport=transport,
        ssrc="0100000001",
        payloads=((96, "PS"),),
        start=start,
        stop=start + 10 if start else 0,
    ).serialize()
    for name, transport, start in (
        ("Play", GbTransport.UDP, 0),
        ("Play", GbTransport.TCP_PASSIVE, 0),
        ("Playback", GbTransport.UDP, 1_700_000_000),
    )
]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["flip", "insert", "delete"]))
        if op == "flip" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[pos : pos + draw(st.integers(1, 16))]
    return bytes(data)


async def answer(method: str, body: bytes, content_type: str) -> int:
    rig = build_rig()
    try:
        request = request_from_upper(
            method, OUR_ID if method == "MESSAGE" else SHARED, body=body, content_type=content_type
        )
        response = await rig.handler.handle_request(request, UPPER)
        assert response is not None
        assert len(rig.audit.entries) == 1  # every request is audited, once
        return response.status
    finally:
        await rig.handler.close()
        # Nothing outlives the handler: no session, no hub reader, no task.
        assert rig.handler.sessions == 0 and rig.handler.tasks_in_flight == 0
        assert all(hub.readers() == [] for hub in rig.cameras.hubs.values())


@settings(max_examples=150, deadline=None)
@given(st.one_of(mutated(MESSAGE_SEEDS), st.binary(max_size=400)))
@example(MESSAGE_SEEDS[0].replace(b"<SN>1</SN>", b"<SN>99999999999999999999</SN>"))
@example(MESSAGE_SEEDS[3].replace(b"T", b"X"))
def test_messages_get_200_or_400(body: bytes) -> None:
    assert asyncio.run(answer("MESSAGE", body, "Application/MANSCDP+xml")) in (200, 400)


@settings(max_examples=150, deadline=None)
@given(st.one_of(mutated(SDP_SEEDS), st.binary(max_size=300)))
@example(SDP_SEEDS[0].replace(b"y=0100000001", b"y=9999999999"))
@example(SDP_SEEDS[0].replace(b"m=video 9", b"m=video 99999"))
@example(SDP_SEEDS[2].replace(b"t=1700000000", b"t=abc"))
def test_invites_get_a_final_answer(body: bytes) -> None:
    # 200 (a session, closed by the handler's close), 4xx for what cannot be served, 500 if no socket opens.
    status = asyncio.run(answer("INVITE", body, "APPLICATION/SDP"))
    assert status == 200 or 400 <= status < 500 or status == 500
