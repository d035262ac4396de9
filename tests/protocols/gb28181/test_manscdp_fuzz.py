"""Hypothesis fuzzing of the MANSCDP parser: random and mutated bodies raise only ManscdpError; generated
messages round-trip through every charset."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.gb28181.errors import ManscdpError
from vigil.protocols.gb28181.manscdp import (
    AlarmNotify,
    CatalogEvent,
    CatalogInfo,
    CatalogItem,
    CatalogNotify,
    CatalogResponse,
    GbVersion,
    ItemStatus,
    MobilePosition,
    MobilePositionNotify,
    PositionStyle,
    decode_manscdp,
    encode_manscdp,
)

TZ = ZoneInfo("Asia/Shanghai")

# Real-shaped seeds: a keepalive as devices send it (GB2312 prolog, CRLF) and a one-item catalog page.
SEEDS = [
    b'<?xml version="1.0" encoding="GB2312"?>\r\n<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n<SN>43</SN>\r\n'
    b"<DeviceID>34020000001320000001</DeviceID>\r\n<Status>OK</Status>\r\n</Notify>\r\n",
    '<?xml version="1.0" encoding="GB2312"?>\r\n<Response><CmdType>Catalog</CmdType><SN>1</SN>'
    '<DeviceID>34020000001180000001</DeviceID><SumNum>1</SumNum><DeviceList Num="1"><Item>'
    "<DeviceID>34020000001320000001</DeviceID><Name>东门</Name><Status>ON</Status><Longitude>117.2</Longitude>"
    "<Info><PTZType>1</PTZType></Info></Item></DeviceList></Response>".encode("gb2312"),
    b"<Control><CmdType>DeviceControl</CmdType><SN>11</SN><DeviceID>34020000001320000001</DeviceID>"
    b"<PTZCmd>A50F010180000036</PTZCmd><Info><ControlPriority>5</ControlPriority></Info></Control>",
    # An alarm subscription body as WVP's alarmSubscribe writes it.
    b'<?xml version="1.0" encoding="GB2312"?>\r\n<Query><CmdType>Alarm</CmdType><SN>5</SN>'
    b"<DeviceID>34020000001180000001</DeviceID><StartAlarmPriority>1</StartAlarmPriority>"
    b"<EndAlarmPriority>4</EndAlarmPriority><AlarmMethod>0</AlarmMethod>"
    b"<StartAlarmTime>2026-11-21T00:00:00</StartAlarmTime></Query>",
]


def _parses_or_manscdp_error(data: bytes) -> None:
    try:
        decoded = decode_manscdp(data, tz=TZ)
    except ManscdpError:
        return
    assert decoded.charset in Charset


@given(st.binary(max_size=512))
@example(SEEDS[0])
@example(SEEDS[1])
@example(SEEDS[2])
@example(SEEDS[3])
def test_random_bytes(data: bytes) -> None:
    _parses_or_manscdp_error(data)


@given(st.sampled_from(SEEDS), st.data())
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_mutated_seeds(seed: bytes, data: st.DataObject) -> None:
    raw = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "drop", "insert", "truncate"]))
        if action == "flip":
            raw[pos] = data.draw(st.integers(0, 255))
        elif action == "drop":
            del raw[pos]
        elif action == "insert":
            raw[pos:pos] = data.draw(st.sampled_from([b"<", b"&", b"<!DOCTYPE x>", b"]]>", b"\x00", b"\xff", b"<a>"]))
        else:
            del raw[pos:]
        if not raw:
            raw = bytearray(b"<")
    _parses_or_manscdp_error(bytes(raw))


TAGS = [
    "CmdType",
    "SN",
    "DeviceID",
    "SumNum",
    "DeviceList",
    "Item",
    "Info",
    "Status",
    "Event",
    "PTZCmd",
    "StartTime",
    "EndTime",
    "Longitude",
    "Port",
    "RecordList",
    "AlarmTime",
    "AlarmMethod",
    "AlarmPriority",
    "Online",
    "Result",
    "Alarmstatus",
    "DutyStatus",
    "TeleBoot",
    "RecordCmd",
    "Time",
    "CaptureTime",
    "StartAlarmPriority",
    "EndAlarmPriority",
    "StartAlarmTime",
    "AlarmType",
]
CMD_TYPES = [
    "Keepalive",
    "Catalog",
    "DeviceInfo",
    "DeviceStatus",
    "RecordInfo",
    "DeviceControl",
    "Alarm",
    "MobilePosition",
    "MediaStatus",
    "Broadcast",
    "Nope",
]
VALUES = st.one_of(
    st.sampled_from(["1", "-1", "ON", "OFF", "OK", "x", "", "2026-11-21T14:03:00", "A50F010180000036", "1e400"]),
    st.text(max_size=8),
)


@st.composite
def element(draw: st.DrawFn, depth: int = 0) -> str:
    tag = draw(st.sampled_from(TAGS))
    if depth < 3 and draw(st.booleans()):
        children = "".join(draw(st.lists(element(depth + 1), max_size=4)))
        return f"<{tag}>{children}</{tag}>"
    text = draw(VALUES).replace("&", "&amp;").replace("<", "&lt;")
    return f"<{tag}>{text}</{tag}>"


@given(
    st.sampled_from(["Query", "Response", "Notify", "Control"]),
    st.sampled_from(CMD_TYPES),
    st.lists(element(), max_size=8),
)
def test_structured_bodies(root: str, cmd_type: str, children: list[str]) -> None:
    xml = f"<{root}><CmdType>{cmd_type}</CmdType><SN>1</SN><DeviceID>1</DeviceID>{''.join(children)}</{root}>"
    _parses_or_manscdp_error(xml.encode("utf-8", "surrogatepass"))


# Text that survives XML 1.0 and stripping: no control characters, no surrounding whitespace, no \r.
TEXT = (
    st.text(
        alphabet=st.characters(
            blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff", max_codepoint=0x2FFFF
        ),
        min_size=1,
        max_size=20,
    )
    .map(str.strip)
    .filter(bool)
)
OPT_TEXT = st.none() | TEXT
COORD = st.none() | st.floats(-180, 180, allow_nan=False)
SMALL = st.none() | st.integers(0, 99999)
# Hypothesis wants naive bounds; the zone is attached after (China has had no DST since 1991).
_FROM, _TO = datetime(2000, 1, 1), datetime(2099, 1, 1)  # noqa: DTZ001
TIMES = st.datetimes(min_value=_FROM, max_value=_TO).map(lambda d: d.replace(microsecond=0, tzinfo=TZ))

INFOS = st.none() | st.builds(
    CatalogInfo,
    ptz_type=SMALL,
    capture_position_type=OPT_TEXT,
    resolution=OPT_TEXT,
    horizontal_field_angle=COORD,
    grassroots_code=OPT_TEXT,
).filter(lambda info: info != CatalogInfo())
ITEMS = st.builds(
    CatalogItem,
    device_id=TEXT,
    name=OPT_TEXT,
    manufacturer=OPT_TEXT,
    address=OPT_TEXT,
    parental=SMALL,
    parent_id=OPT_TEXT,
    port=SMALL,
    status=st.none() | st.sampled_from(ItemStatus),
    longitude=COORD,
    latitude=COORD,
    business_group_id=OPT_TEXT,
    info=INFOS,
)


@given(
    st.integers(0, 2**32 - 1),
    TEXT,
    st.lists(ITEMS, max_size=4),
    st.sampled_from(Charset),
    st.sampled_from(GbVersion),
)
def test_generated_catalog_round_trips(
    sn: int, device_id: str, items: list[CatalogItem], charset: Charset, version: GbVersion
) -> None:
    msg = CatalogResponse(sn=sn, device_id=device_id, sum_num=len(items) + 3, items=tuple(items))
    assert decode_manscdp(encode_manscdp(msg, tz=TZ, charset=charset, version=version), tz=TZ).message == msg


@given(st.lists(st.tuples(TEXT, st.sampled_from(CatalogEvent)), min_size=1, max_size=4), st.sampled_from(Charset))
def test_generated_catalog_notify_round_trips(events: list[tuple[str, CatalogEvent]], charset: Charset) -> None:
    items = tuple(CatalogItem(device_id=device, event=event) for device, event in events)
    msg = CatalogNotify(sn=1, device_id="34020000001180000001", sum_num=len(items), items=items)
    assert decode_manscdp(encode_manscdp(msg, tz=TZ, charset=charset), tz=TZ).message == msg


@given(TEXT, SMALL, TIMES, OPT_TEXT, COORD, st.sampled_from(Charset))
def test_generated_alarm_round_trips(
    device_id: str, alarm_type: int | None, time: datetime, description: str | None, lon: float | None, charset: Charset
) -> None:
    msg = AlarmNotify(
        sn=1,
        device_id=device_id,
        priority=2,
        method=5,
        time=time,
        description=description,
        longitude=lon,
        alarm_type=alarm_type,
    )
    assert decode_manscdp(encode_manscdp(msg, tz=TZ, charset=charset), tz=TZ).message == msg


@given(st.lists(st.tuples(TEXT, TIMES, st.floats(-180, 180), st.floats(-90, 90)), min_size=1, max_size=3))
def test_generated_positions_round_trip(rows: list[tuple[str, datetime, float, float]]) -> None:
    positions = tuple(MobilePosition(device_id=d, time=t, longitude=lo, latitude=la) for d, t, lo, la in rows)
    listed = MobilePositionNotify(sn=1, device_id="34020000001180000001", positions=positions)
    assert decode_manscdp(encode_manscdp(listed, tz=TZ), tz=TZ).message == listed
    first = positions[0]
    flat = MobilePositionNotify(sn=1, device_id=first.device_id, positions=(first,), style=PositionStyle.FLAT)
    assert decode_manscdp(encode_manscdp(flat, tz=TZ), tz=TZ).message == flat
