"""MANSCDP bodies: realistic samples (written from the digest's examples) in GB2312 and UTF-8, round trips,
charset mismatches, Hikvision repairs, hostile XML, unknown CmdTypes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.gb28181.errors import ForbiddenXmlError, ManscdpError
from vigil.protocols.gb28181.manscdp import (
    AlarmNotify,
    AlarmQuery,
    AlarmReset,
    AlarmStatus,
    BroadcastNotify,
    CatalogEvent,
    CatalogInfo,
    CatalogItem,
    CatalogNotify,
    CatalogQuery,
    CatalogResponse,
    DeviceControl,
    DeviceInfoQuery,
    DeviceInfoResponse,
    DeviceStatusQuery,
    DeviceStatusResponse,
    DutyStatus,
    GbVersion,
    GuardControl,
    IFrameControl,
    ItemStatus,
    Keepalive,
    MediaStatusNotify,
    Message,
    MobilePosition,
    MobilePositionNotify,
    MobilePositionQuery,
    PositionStyle,
    PtzControl,
    RecordControl,
    RecordInfoQuery,
    RecordInfoResponse,
    RecordItem,
    Result,
    ResultResponse,
    TeleBoot,
    UnknownMessage,
    decode_manscdp,
    encode_manscdp,
    parse_manscdp,
)
from vigil.protocols.gb28181.ptz import Pan, PtzCmd, PtzMove

BEIJING = ZoneInfo("Asia/Shanghai")


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BEIJING)


def body(xml: str, charset: str = "GB2312") -> bytes:
    """A sample as a device sends it: declaration naming ``charset`` and the bytes in that charset."""
    return f'<?xml version="1.0" encoding="{charset}"?>\r\n{xml}'.encode("gb18030" if charset != "UTF-8" else "utf-8")


KEEPALIVE = """<Notify>
<CmdType>Keepalive</CmdType>
<SN>43</SN>
<DeviceID>34020000001320000001</DeviceID>
<Status>OK</Status>
<Info>
<DeviceID>34020000001340000001</DeviceID>
</Info>
</Notify>
"""

CATALOG_QUERY = """<Query>
<CmdType>Catalog</CmdType>
<SN>17430</SN>
<DeviceID>34020000001320000001</DeviceID>
</Query>
"""

# 2016 style (WVP CommonGBChannel.getFullContent): Owner/SafetyWay, BusinessGroupID and PositionType in Info.
CATALOG_2016 = """<Response>
<CmdType>Catalog</CmdType>
<SN>17430</SN>
<DeviceID>34020000001180000001</DeviceID>
<SumNum>3</SumNum>
<DeviceList Num="2">
<Item>
<DeviceID>34020000001320000001</DeviceID>
<Name>东门入口 1号</Name>
<Manufacturer>Hikvision</Manufacturer>
<Model>DS-2CD2T47G2</Model>
<Owner>Owner</Owner>
<CivilCode>340200</CivilCode>
<Address>合肥市蜀山区东门</Address>
<Parental>0</Parental>
<ParentID>34020000001180000001</ParentID>
<SafetyWay>0</SafetyWay>
<RegisterWay>1</RegisterWay>
<Secrecy>0</Secrecy>
<IPAddress>192.168.1.64</IPAddress>
<Port>5060</Port>
<Status>ON</Status>
<Longitude>117.2272</Longitude>
<Latitude>31.8206</Latitude>
<Info>
<PTZType>1</PTZType>
<PositionType>8</PositionType>
<RoomType>1</RoomType>
<BusinessGroupID>34020000002150000001</BusinessGroupID>
<DownloadSpeed>1/2/4</DownloadSpeed>
</Info>
</Item>
<Item>
<DeviceID>34020000001320000002</DeviceID>
<Name>西门</Name>
<Manufacturer>Dahua</Manufacturer>
<Model>IPC-HFW</Model>
<CivilCode>340200</CivilCode>
<Address>西门</Address>
<Parental>0</Parental>
<ParentID>34020000001180000001</ParentID>
<RegisterWay>1</RegisterWay>
<Secrecy>0</Secrecy>
<Status>OFFLINE</Status>
<PTZType>3</PTZType>
</Item>
</DeviceList>
</Response>
"""

# 2022 style: BusinessGroupID at item level, 2022 Info fields, a region node and a virtual organisation.
CATALOG_2022 = """<Response>
<CmdType>Catalog</CmdType>
<SN>17430</SN>
<DeviceID>34020000001180000001</DeviceID>
<SumNum>3</SumNum>
<DeviceList Num="2">
<Item>
<DeviceID>340200</DeviceID>
<Name>合肥市</Name>
</Item>
<Item>
<DeviceID>34020000002160000001</DeviceID>
<Name>一号楼</Name>
<ParentID>34020000002150000001</ParentID>
<BusinessGroupID>34020000002150000001</BusinessGroupID>
<Info>
<PTZType>2</PTZType>
<CapturePositionType>1</CapturePositionType>
<StreamNumberList>0/1</StreamNumberList>
<HorizontalFieldAngle>90.5</HorizontalFieldAngle>
<GrassrootsCode>000000</GrassrootsCode>
<MAC>00-11-22-33-44-55</MAC>
<RecordSaveDays>30</RecordSaveDays>
<VendorThing>x</VendorThing>
</Info>
<VendorField>kept</VendorField>
</Item>
</DeviceList>
</Response>
"""

CATALOG_NOTIFY = """<Notify>
<CmdType>Catalog</CmdType>
<SN>9</SN>
<DeviceID>34020000001180000001</DeviceID>
<SumNum>2</SumNum>
<DeviceList Num="2">
<Item>
<DeviceID>34020000001320000001</DeviceID>
<Event>OFF</Event>
</Item>
<Item>
<DeviceID>34020000001320000003</DeviceID>
<Name>新增</Name>
<ParentID>34020000001180000001</ParentID>
<Status>ON</Status>
<Event>ADD</Event>
</Item>
</DeviceList>
</Notify>
"""

DEVICE_INFO = """<Response>
<CmdType>DeviceInfo</CmdType>
<SN>2</SN>
<DeviceID>34020000001180000001</DeviceID>
<DeviceName>NVR 一号</DeviceName>
<Result>OK</Result>
<Manufacturer>Hikvision</Manufacturer>
<Model>DS-7608</Model>
<Firmware>V4.30.085</Firmware>
<Channel>8</Channel>
</Response>
"""

DEVICE_STATUS = """<Response>
<CmdType>DeviceStatus</CmdType>
<SN>3</SN>
<DeviceID>34020000001320000001</DeviceID>
<Result>OK</Result>
<Online>ONLINE</Online>
<Status>OK</Status>
<Encode>ON</Encode>
<Record>OFF</Record>
<DeviceTime>2026-11-21T14:03:00</DeviceTime>
<Alarmstatus Num="1">
<Item>
<DeviceID>34020000001340000001</DeviceID>
<DutyStatus>OFFDUTY</DutyStatus>
</Item>
</Alarmstatus>
</Response>
"""

RECORD_QUERY = """<Query>
<CmdType>RecordInfo</CmdType>
<SN>5</SN>
<DeviceID>34020000001320000001</DeviceID>
<StartTime>2026-11-21T00:00:00</StartTime>
<EndTime>2026-11-21T23:59:59</EndTime>
<Secrecy>0</Secrecy>
<Type>all</Type>
</Query>
"""

RECORD_RESPONSE = """<Response>
<CmdType>RecordInfo</CmdType>
<SN>5</SN>
<DeviceID>34020000001320000001</DeviceID>
<Name>东门</Name>
<SumNum>2</SumNum>
<RecordList Num="2">
<Item>
<DeviceID>34020000001320000001</DeviceID>
<Name>东门</Name>
<FilePath>/rec/1.mp4</FilePath>
<StartTime>2026-11-21T08:00:00</StartTime>
<EndTime>2026-11-21T09:00:00</EndTime>
<Secrecy>0</Secrecy>
<Type>time</Type>
<FileSize>104857600</FileSize>
</Item>
<Item>
<DeviceID>34020000001320000001</DeviceID>
<StartTime>2026-11-21T09:00:00</StartTime>
<EndTime>2026-11-21T09:30:00.500</EndTime>
<Type>alarm</Type>
</Item>
</RecordList>
</Response>
"""

PTZ_CONTROL = """<Control>
<CmdType>DeviceControl</CmdType>
<SN>11</SN>
<DeviceID>34020000001320000001</DeviceID>
<PTZCmd>A50F010180000036</PTZCmd>
<Info>
<ControlPriority>5</ControlPriority>
</Info>
</Control>
"""

ALARM = """<Notify>
<CmdType>Alarm</CmdType>
<SN>7</SN>
<DeviceID>34020000001340000001</DeviceID>
<AlarmPriority>1</AlarmPriority>
<AlarmMethod>5</AlarmMethod>
<AlarmTime>2026-11-21T14:03:00</AlarmTime>
<AlarmDescription>区域入侵</AlarmDescription>
<Longitude>117.2272</Longitude>
<Latitude>31.8206</Latitude>
<Info>
<AlarmType>6</AlarmType>
<AlarmTypeParam>
<EventType>1</EventType>
</AlarmTypeParam>
</Info>
</Notify>
"""

POSITION_2016 = """<Notify>
<CmdType>MobilePosition</CmdType>
<SN>8</SN>
<DeviceID>34020000001380000001</DeviceID>
<Time>2026-11-21T14:03:00</Time>
<Longitude>117.2272</Longitude>
<Latitude>31.8206</Latitude>
<Speed>40.5</Speed>
<Direction>90</Direction>
<Altitude>30</Altitude>
</Notify>
"""

POSITION_2022 = """<Notify>
<CmdType>MobilePosition</CmdType>
<SN>8</SN>
<DeviceID>34020000001180000001</DeviceID>
<Time>2026-11-21T14:03:05</Time>
<SumNum>2</SumNum>
<DeviceList Num="2">
<Item>
<DeviceID>34020000001380000001</DeviceID>
<CaptureTime>2026-11-21T14:03:00</CaptureTime>
<Longitude>117.2272</Longitude>
<Latitude>31.8206</Latitude>
<Speed>40.5</Speed>
</Item>
<Item>
<DeviceID>34020000001380000002</DeviceID>
<CaptureTime>2026-11-21T14:03:01</CaptureTime>
<Longitude>117.3</Longitude>
<Latitude>31.9</Latitude>
<Height>2.5</Height>
</Item>
</DeviceList>
</Notify>
"""

SAMPLES = {
    "keepalive": KEEPALIVE,
    "catalog_query": CATALOG_QUERY,
    "catalog_2016": CATALOG_2016,
    "catalog_2022": CATALOG_2022,
    "catalog_notify": CATALOG_NOTIFY,
    "device_info": DEVICE_INFO,
    "device_status": DEVICE_STATUS,
    "record_query": RECORD_QUERY,
    "record_response": RECORD_RESPONSE,
    "ptz_control": PTZ_CONTROL,
    "alarm": ALARM,
    "position_2016": POSITION_2016,
    "position_2022": POSITION_2022,
}


def test_keepalive() -> None:
    msg = parse_manscdp(body(KEEPALIVE), tz=BEIJING)
    assert msg == Keepalive(
        sn=43, device_id="34020000001320000001", status="OK", faulty_device_ids=("34020000001340000001",)
    )


def test_catalog_2016_spellings() -> None:
    decoded = decode_manscdp(body(CATALOG_2016), tz=BEIJING)
    assert decoded.charset is Charset.GB2312
    msg = decoded.message
    assert isinstance(msg, CatalogResponse)
    assert (msg.sn, msg.device_id, msg.sum_num, len(msg.items)) == (17430, "34020000001180000001", 3, 2)
    first, second = msg.items
    assert first.name == "东门入口 1号" and first.address == "合肥市蜀山区东门"
    assert first.status is ItemStatus.ON and first.port == 5060 and first.owner == "Owner"
    assert first.longitude == pytest.approx(117.2272) and first.latitude == pytest.approx(31.8206)
    assert first.business_group_id == "34020000002150000001"  # lifted out of 2016 Info
    assert first.info == CatalogInfo(ptz_type=1, position_type=8, room_type=1, download_speed="1/2/4")
    assert first.ptz_type == 1
    assert second.status is ItemStatus.OFF  # OFFLINE accepted
    assert second.ptz_type == 3  # item-level PTZType accepted


def test_catalog_2022_spellings_and_unknown_fields_kept() -> None:
    msg = parse_manscdp(body(CATALOG_2022, "UTF-8"), tz=BEIJING)
    assert isinstance(msg, CatalogResponse)
    region, org = msg.items
    assert region == CatalogItem(device_id="340200", name="合肥市")
    assert org.business_group_id == "34020000002150000001"
    assert org.info is not None
    assert org.info.capture_position_type == "1" and org.info.horizontal_field_angle == 90.5
    assert org.info.stream_number_list == "0/1" and org.info.record_save_days == 30
    assert org.info.extra == (("VendorThing", "x"),)
    assert org.extra == (("VendorField", "kept"),)


@pytest.mark.parametrize("version", list(GbVersion))
def test_catalog_business_group_written_per_version(version: GbVersion) -> None:
    item = CatalogItem(device_id="34020000001320000001", business_group_id="34020000002150000001")
    msg = CatalogResponse(sn=1, device_id="34020000001180000001", sum_num=1, items=(item,))
    raw = encode_manscdp(msg, tz=BEIJING, charset=Charset.UTF_8, version=version).decode()
    inside_info = "<Info>\n<BusinessGroupID>" in raw
    assert inside_info is (version is GbVersion.V2016)
    assert parse_manscdp(raw.encode(), tz=BEIJING) == msg


def test_catalog_notify_events() -> None:
    msg = parse_manscdp(body(CATALOG_NOTIFY), tz=BEIJING)
    assert isinstance(msg, CatalogNotify)
    assert [(i.device_id, i.event) for i in msg.items] == [
        ("34020000001320000001", CatalogEvent.OFF),
        ("34020000001320000003", CatalogEvent.ADD),
    ]
    assert msg.items[1].name == "新增"


def test_device_info_and_status() -> None:
    info = parse_manscdp(body(DEVICE_INFO), tz=BEIJING)
    assert info == DeviceInfoResponse(
        sn=2,
        device_id="34020000001180000001",
        result=Result.OK,
        device_name="NVR 一号",
        manufacturer="Hikvision",
        model="DS-7608",
        firmware="V4.30.085",
        channel=8,
    )
    status = parse_manscdp(body(DEVICE_STATUS), tz=BEIJING)
    assert status == DeviceStatusResponse(
        sn=3,
        device_id="34020000001320000001",
        result=Result.OK,
        online=True,
        status=Result.OK,
        encode=ItemStatus.ON,
        record=ItemStatus.OFF,
        device_time=t("2026-11-21T14:03:00"),
        alarm_status=(AlarmStatus(device_id="34020000001340000001", duty_status=DutyStatus.OFFDUTY),),
    )


def test_record_info_query_and_response() -> None:
    query = parse_manscdp(body(RECORD_QUERY), tz=BEIJING)
    assert query == RecordInfoQuery(
        sn=5,
        device_id="34020000001320000001",
        start_time=t("2026-11-21T00:00:00"),
        end_time=t("2026-11-21T23:59:59"),
    )
    response = parse_manscdp(body(RECORD_RESPONSE), tz=BEIJING)
    assert isinstance(response, RecordInfoResponse)
    assert response.sum_num == 2 and response.name == "东门"
    first, second = response.items
    assert first.file_size == 104857600 and first.type == "time" and first.file_path == "/rec/1.mp4"
    assert second.end_time == t("2026-11-21T09:30:00")  # fractional seconds dropped


def test_record_query_requires_time_range() -> None:
    xml = RECORD_QUERY.replace("<EndTime>2026-11-21T23:59:59</EndTime>\n", "")
    with pytest.raises(ManscdpError, match="end_time"):
        parse_manscdp(body(xml), tz=BEIJING)


def test_ptz_control() -> None:
    msg = parse_manscdp(body(PTZ_CONTROL), tz=BEIJING)
    assert msg == DeviceControl(
        sn=11,
        device_id="34020000001320000001",
        command=PtzControl(cmd=PtzCmd(PtzMove(pan=Pan.RIGHT, pan_speed=0x80))),
        control_priority=5,
    )


def test_bad_ptz_cmd_is_a_manscdp_error() -> None:
    with pytest.raises(ManscdpError, match="PTZCmd"):
        parse_manscdp(body(PTZ_CONTROL.replace("A50F010180000036", "A50F010180000037")), tz=BEIJING)


@pytest.mark.parametrize(
    ("element", "command"),
    [
        ("<TeleBoot>Boot</TeleBoot>", TeleBoot()),
        ("<RecordCmd>Record</RecordCmd>", RecordControl(record=True)),
        ("<RecordCmd>StopRecord</RecordCmd>", RecordControl(record=False)),
        ("<GuardCmd>SetGuard</GuardCmd>", GuardControl(guard=True)),
        ("<GuardCmd>ResetGuard</GuardCmd>", GuardControl(guard=False)),
        (
            "<AlarmCmd>ResetAlarm</AlarmCmd><Info><AlarmMethod>2</AlarmMethod><AlarmType>1</AlarmType></Info>",
            AlarmReset(alarm_method="2", alarm_type="1"),
        ),
        ("<IFameCmd>Send</IFameCmd>", IFrameControl(tag="IFameCmd")),
        ("<IFrameCmd>Send</IFrameCmd>", IFrameControl()),
    ],
)
def test_other_device_controls(element: str, command: object) -> None:
    head = "<Control><CmdType>DeviceControl</CmdType><SN>1</SN><DeviceID>34020000001320000001</DeviceID>"
    xml = f"{head}{element}</Control>"
    msg = parse_manscdp(body(xml), tz=BEIJING)
    assert isinstance(msg, DeviceControl) and msg.command == command
    assert parse_manscdp(encode_manscdp(msg, tz=BEIJING), tz=BEIJING) == msg


def test_unsupported_device_control_is_unknown_not_error() -> None:
    xml = (
        "<Control><CmdType>DeviceControl</CmdType><SN>4</SN><DeviceID>34020000001320000001</DeviceID>"
        "<HomePosition><Enabled>1</Enabled></HomePosition></Control>"
    )
    msg = parse_manscdp(body(xml), tz=BEIJING)
    assert isinstance(msg, UnknownMessage) and msg.sn == 4 and "HomePosition" in msg.reason


def test_alarm_and_its_response() -> None:
    msg = parse_manscdp(body(ALARM), tz=BEIJING)
    assert msg == AlarmNotify(
        sn=7,
        device_id="34020000001340000001",
        priority=1,
        method=5,
        time=t("2026-11-21T14:03:00"),
        description="区域入侵",
        longitude=117.2272,
        latitude=31.8206,
        alarm_type=6,
        event_type=1,
    )
    reply = ResultResponse(cmd_type="Alarm", sn=msg.sn, device_id=msg.device_id, result=Result.OK)
    raw = encode_manscdp(reply, tz=BEIJING)
    assert b"<Response>" in raw and b"<CmdType>Alarm</CmdType>" in raw and b"<Result>OK</Result>" in raw
    assert parse_manscdp(raw, tz=BEIJING) == reply


def test_subscription_answer_is_a_result_response() -> None:
    xml = (
        "<Response><CmdType>Catalog</CmdType><SN>1</SN><DeviceID>34020000001180000001</DeviceID>"
        "<Result>OK</Result></Response>"
    )
    assert parse_manscdp(body(xml), tz=BEIJING) == ResultResponse(
        cmd_type="Catalog", sn=1, device_id="34020000001180000001", result=Result.OK
    )


def test_alarm_subscription_query() -> None:
    xml = (
        "<Query><CmdType>Alarm</CmdType><SN>5</SN><DeviceID>34020000001180000001</DeviceID>"
        "<StartAlarmPriority>1</StartAlarmPriority><EndAlarmPriority>4</EndAlarmPriority>"
        "<AlarmMethod>1/2/5</AlarmMethod><StartAlarmTime>2026-11-21T00:00:00</StartAlarmTime></Query>"
    )
    msg = parse_manscdp(body(xml), tz=BEIJING)
    assert msg == AlarmQuery(
        sn=5,
        device_id="34020000001180000001",
        start_priority=1,
        end_priority=4,
        alarm_method="1/2/5",
        start_time=t("2026-11-21T00:00:00"),
    )
    raw = encode_manscdp(msg, tz=BEIJING)
    assert b"<Query>" in raw and b"<StartAlarmPriority>1</StartAlarmPriority>" in raw
    assert b"<EndAlarmTime>" not in raw  # absent filters are left out, not sent empty


def test_mobile_position_both_layouts() -> None:
    flat = parse_manscdp(body(POSITION_2016), tz=BEIJING)
    assert flat == MobilePositionNotify(
        sn=8,
        device_id="34020000001380000001",
        style=PositionStyle.FLAT,
        positions=(
            MobilePosition(
                device_id="34020000001380000001",
                time=t("2026-11-21T14:03:00"),
                longitude=117.2272,
                latitude=31.8206,
                speed=40.5,
                direction=90.0,
                altitude=30.0,
            ),
        ),
    )
    listed = parse_manscdp(body(POSITION_2022), tz=BEIJING)
    assert isinstance(listed, MobilePositionNotify) and listed.style is PositionStyle.LIST
    assert listed.time == t("2026-11-21T14:03:05")
    assert [p.device_id for p in listed.positions] == ["34020000001380000001", "34020000001380000002"]
    assert listed.positions[1].height == 2.5


@pytest.mark.parametrize("name", sorted(SAMPLES))
@pytest.mark.parametrize("charset", list(Charset))
def test_round_trip_every_sample_in_every_charset(name: str, charset: Charset) -> None:
    msg = parse_manscdp(body(SAMPLES[name]), tz=BEIJING)
    raw = encode_manscdp(msg, tz=BEIJING, charset=charset)
    decoded = decode_manscdp(raw, tz=BEIJING)
    assert decoded.message == msg
    assert raw.startswith(f'<?xml version="1.0" encoding="{charset.value}"?>'.encode())
    assert decoded.charset is charset  # the peer reads back what we declared


@pytest.mark.parametrize(
    "msg",
    [
        CatalogQuery(sn=1, device_id="34020000001320000001", start_time=t("2026-01-01T00:00:00")),
        DeviceInfoQuery(sn=2, device_id="34020000001320000001"),
        DeviceStatusQuery(sn=3, device_id="34020000001320000001"),
        MobilePositionQuery(sn=4, device_id="34020000001380000001", interval=5),
        AlarmQuery(sn=4, device_id="34020000001180000001", end_priority=4, alarm_type="2"),
        MediaStatusNotify(sn=5, device_id="34020000001320000001"),
        BroadcastNotify(sn=6, source_id="34020000002000000001", target_id="34020000001370000001"),
        CatalogResponse(sn=7, device_id="34020000001180000001", sum_num=0),
        RecordInfoResponse(sn=8, device_id="34020000001320000001", sum_num=0),
        ResultResponse(cmd_type="DeviceControl", sn=9, device_id="34020000001320000001", result=Result.ERROR),
    ],
)
def test_round_trip_built_messages(msg: Message) -> None:
    for charset in Charset:
        assert parse_manscdp(encode_manscdp(msg, tz=BEIJING, charset=charset), tz=BEIJING) == msg


def test_wvp_record_query_defaults_are_written() -> None:
    query = RecordInfoQuery(
        sn=1, device_id="34020000001320000001", start_time=t("2026-11-21T00:00:00"), end_time=t("2026-11-21T01:00:00")
    )
    raw = encode_manscdp(query, tz=BEIJING)
    assert b"<Secrecy>0</Secrecy>" in raw and b"<Type>all</Type>" in raw
    assert b"<StartTime>2026-11-21T00:00:00</StartTime>" in raw


def test_empty_catalog_has_no_list() -> None:
    raw = encode_manscdp(CatalogResponse(sn=7, device_id="34020000001180000001", sum_num=0), tz=BEIJING)
    assert b"<SumNum>0</SumNum>" in raw and b"DeviceList" not in raw


# --- times --------------------------------------------------------------------------------------------


def test_times_convert_with_the_tz_passed_in() -> None:
    moment = datetime(2026, 11, 21, 6, 3, tzinfo=UTC)
    msg = AlarmNotify(sn=1, device_id="34020000001340000001", priority=1, method=2, time=moment)
    raw = encode_manscdp(msg, tz=BEIJING)
    assert b"<AlarmTime>2026-11-21T14:03:00</AlarmTime>" in raw
    parsed = parse_manscdp(raw, tz=BEIJING)
    assert isinstance(parsed, AlarmNotify) and parsed.time == moment
    other = parse_manscdp(raw, tz=timezone(timedelta(hours=-5)))
    assert isinstance(other, AlarmNotify) and other.time == datetime(2026, 11, 21, 19, 3, tzinfo=UTC)


def test_naive_datetime_is_refused_on_output() -> None:
    msg = AlarmNotify(sn=1, device_id="1", priority=1, method=2, time=datetime(2026, 11, 21, 14, 3))  # noqa: DTZ001
    with pytest.raises(ManscdpError, match="naive"):
        encode_manscdp(msg, tz=BEIJING)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-21 14:03:00", t("2026-11-21T14:03:00")),
        ("2026-11-21T14:03:00.123", t("2026-11-21T14:03:00")),
        ("2026-11-21T06:03:00Z", t("2026-11-21T14:03:00")),
        ("2026-11-21T14:03:00+08:00", t("2026-11-21T14:03:00")),
    ],
)
def test_time_variants_devices_send(text: str, expected: datetime) -> None:
    xml = ALARM.replace("2026-11-21T14:03:00", text)
    msg = parse_manscdp(body(xml), tz=BEIJING)
    assert isinstance(msg, AlarmNotify) and msg.time == expected


# --- charsets ----------------------------------------------------------------------------------------


def test_declared_gb2312_bytes_decode() -> None:
    raw = body(CATALOG_NOTIFY, "GB2312")
    assert "新增".encode("gb2312") in raw
    decoded = decode_manscdp(raw, tz=BEIJING)
    assert decoded.charset is Charset.GB2312
    assert isinstance(decoded.message, CatalogNotify) and decoded.message.items[1].name == "新增"


def test_declared_gb2312_but_sent_utf8_is_read_as_utf8() -> None:
    raw = f'<?xml version="1.0" encoding="GB2312"?>\r\n{CATALOG_NOTIFY}'.encode()
    decoded = decode_manscdp(raw, tz=BEIJING)
    assert decoded.charset is Charset.UTF_8
    assert isinstance(decoded.message, CatalogNotify) and decoded.message.items[1].name == "新增"


def test_declared_utf8_but_sent_gbk_falls_back_to_gb18030() -> None:
    raw = f'<?xml version="1.0" encoding="UTF-8"?>\r\n{CATALOG_NOTIFY}'.encode("gbk")
    decoded = decode_manscdp(raw, tz=BEIJING)
    assert decoded.charset is Charset.GB18030
    assert isinstance(decoded.message, CatalogNotify) and decoded.message.items[1].name == "新增"


def test_missing_declaration_uses_hint_then_fallbacks() -> None:
    gb = CATALOG_NOTIFY.encode("gb2312")
    assert decode_manscdp(gb, tz=BEIJING, charset=Charset.GBK).charset is Charset.GBK
    assert decode_manscdp(gb, tz=BEIJING).charset is Charset.GB18030
    assert decode_manscdp(CATALOG_NOTIFY.encode(), tz=BEIJING).charset is Charset.UTF_8
    ascii_body = KEEPALIVE.encode()
    assert decode_manscdp(ascii_body, tz=BEIJING, charset=Charset.GB2312).charset is Charset.GB2312
    bom = b"\xef\xbb\xbf" + body(KEEPALIVE, "UTF-8")
    assert decode_manscdp(bom, tz=BEIJING).charset is Charset.UTF_8


def test_serialise_in_peer_charset_and_upgrade_when_needed() -> None:
    item = CatalogItem(device_id="34020000001320000001", name="东门")
    msg = CatalogResponse(sn=1, device_id="34020000001180000001", sum_num=1, items=(item,))
    raw = encode_manscdp(msg, tz=BEIJING, charset=Charset.GB2312)
    assert "东门".encode("gb2312") in raw and raw.startswith(b'<?xml version="1.0" encoding="GB2312"?>')
    # 𠀀 (U+20000) is outside GB2312/GBK: the body is declared and written as GB 18030 instead of losing it.
    rare = CatalogResponse(
        sn=1, device_id="34020000001180000001", sum_num=1, items=(CatalogItem(device_id="1", name="𠀀"),)
    )
    raw = encode_manscdp(rare, tz=BEIJING, charset=Charset.GB2312)
    assert raw.startswith(b'<?xml version="1.0" encoding="GB18030"?>')
    assert parse_manscdp(raw, tz=BEIJING) == rare


def test_undecodable_body_is_an_error() -> None:
    with pytest.raises(ManscdpError, match="neither UTF-8 nor GB 18030"):
        parse_manscdp(b"<Notify>\xff\xff</Notify>", tz=BEIJING)


# --- robustness and errors ------------------------------------------------------------------------------


def test_hikvision_bare_ampersand_and_angle_brackets_in_address() -> None:
    xml = CATALOG_2016.replace("合肥市蜀山区东门", "东门 <北侧> & 西门").replace("Owner</Owner>", "A&B</Owner>")
    msg = parse_manscdp(body(xml), tz=BEIJING)
    assert isinstance(msg, CatalogResponse)
    assert msg.items[0].address == "东门 <北侧> & 西门" and msg.items[0].owner == "A&B"


def test_entities_and_char_refs_still_work() -> None:
    xml = KEEPALIVE.replace("<Status>OK</Status>", "<Status>&#79;&#x4B;</Status>")
    msg = parse_manscdp(body(xml), tz=BEIJING)
    assert isinstance(msg, Keepalive) and msg.status == "OK"


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("<Notify><SN>1</SN></Notify>", "without CmdType"),
        ("<Notify><CmdType>Keepalive</CmdType><DeviceID>1</DeviceID></Notify>", "without SN"),
        ("<Notify><CmdType>Keepalive</CmdType><SN>x</SN><DeviceID>1</DeviceID></Notify>", "SN must be"),
        ("<Notify><CmdType>Keepalive</CmdType><SN>-1</SN><DeviceID>1</DeviceID></Notify>", "SN must be"),
        ("<Notify><CmdType>Keepalive</CmdType><SN>1</SN></Notify>", "without DeviceID"),
        ("<Notify><CmdType>Keepalive", "well-formed"),
        ("", "well-formed"),
        (CATALOG_2016.replace("<Port>5060</Port>", "<Port>50x</Port>"), "Item/Port"),
        (CATALOG_2016.replace("<Status>ON</Status>", "<Status>MAYBE</Status>"), "status"),
        (CATALOG_2016.replace("<Longitude>117.2272</Longitude>", "<Longitude>nan</Longitude>"), "finite"),
        (ALARM.replace("2026-11-21T14:03:00", "yesterday"), "time like"),
        (ALARM.replace("<AlarmMethod>5</AlarmMethod>", ""), "method"),
        (CATALOG_NOTIFY.replace("<Event>OFF</Event>", "<Event>GONE</Event>"), "CatalogEvent"),
        (CATALOG_2016.replace("<SumNum>3</SumNum>", ""), "SumNum"),
    ],
)
def test_malformed_bodies_raise_manscdp_error(xml: str, message: str) -> None:
    with pytest.raises(ManscdpError, match=message):
        parse_manscdp(body(xml), tz=BEIJING)


def test_empty_optional_fields_read_as_absent() -> None:
    xml = CATALOG_2016.replace("<Longitude>117.2272</Longitude>", "<Longitude></Longitude>").replace(
        "<Port>5060</Port>", "<Port/>"
    )
    msg = parse_manscdp(body(xml), tz=BEIJING)
    assert isinstance(msg, CatalogResponse) and msg.items[0].longitude is None and msg.items[0].port is None


def test_unknown_cmd_type_is_a_distinct_result() -> None:
    xml = "<Query><CmdType>PresetQuery</CmdType><SN>12</SN><DeviceID>34020000001320000001</DeviceID></Query>"
    msg = parse_manscdp(body(xml), tz=BEIJING)
    assert msg == UnknownMessage(
        root="Query",
        cmd_type="PresetQuery",
        sn=12,
        device_id="34020000001320000001",
        reason="no handler for <Query> CmdType 'PresetQuery'",
    )
    odd_root = parse_manscdp(body("<Hello><CmdType>Keepalive</CmdType></Hello>"), tz=BEIJING)
    assert isinstance(odd_root, UnknownMessage) and odd_root.sn is None
    with pytest.raises(ManscdpError):
        encode_manscdp(msg, tz=BEIJING)


def test_oversized_body_and_list_are_refused() -> None:
    with pytest.raises(ManscdpError, match="exceeds"):
        parse_manscdp(b" " * (8 * 1024 * 1024 + 1), tz=BEIJING)
    items = "<Item><DeviceID>1</DeviceID></Item>" * 10_001
    head = "<Response><CmdType>Catalog</CmdType><SN>1</SN><DeviceID>1</DeviceID><SumNum>1</SumNum>"
    xml = f"{head}<DeviceList>{items}</DeviceList></Response>"
    with pytest.raises(ManscdpError, match="at most 10000"):
        parse_manscdp(xml.encode(), tz=BEIJING)


def test_control_characters_are_refused_on_output() -> None:
    msg = Keepalive(sn=1, device_id="34020000001320000001", status="O\x00K")
    with pytest.raises(ManscdpError, match=r"XML 1\.0"):
        encode_manscdp(msg, tz=BEIJING)


# --- hostile XML -----------------------------------------------------------------------------------------

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<Notify><CmdType>Keepalive</CmdType><SN>1</SN><DeviceID>&lol9;</DeviceID></Notify>"""

QUADRATIC = (
    '<?xml version="1.0"?><!DOCTYPE q [<!ENTITY a "'
    + "x" * 50_000
    + '">]><Notify><CmdType>Keepalive</CmdType><SN>1</SN><DeviceID>'
    + "&a;" * 1000
    + "</DeviceID></Notify>"
)

EXTERNAL_ENTITY = """<?xml version="1.0" encoding="GB2312"?>
<!DOCTYPE Notify [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Notify><CmdType>Keepalive</CmdType><SN>1</SN><DeviceID>&xxe;</DeviceID></Notify>"""

EXTERNAL_DTD = """<?xml version="1.0"?>
<!DOCTYPE Notify SYSTEM "http://127.0.0.1:9/evil.dtd">
<Notify><CmdType>Keepalive</CmdType><SN>1</SN><DeviceID>1</DeviceID></Notify>"""

PARAMETER_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE Notify [<!ENTITY % remote SYSTEM "file:///etc/passwd"> %remote;]>
<Notify><CmdType>Keepalive</CmdType><SN>1</SN><DeviceID>1</DeviceID></Notify>"""

INTERNAL_DTD = """<!DOCTYPE Notify [<!ELEMENT Notify ANY>]>
<Notify><CmdType>Keepalive</CmdType><SN>1</SN><DeviceID>1</DeviceID></Notify>"""


@pytest.mark.parametrize(
    "xml", [BILLION_LAUGHS, QUADRATIC, EXTERNAL_ENTITY, EXTERNAL_DTD, PARAMETER_ENTITY, INTERNAL_DTD]
)
def test_hostile_xml_is_refused(xml: str) -> None:
    with pytest.raises(ForbiddenXmlError):
        parse_manscdp(xml.encode(), tz=BEIJING)


def test_forbidden_xml_is_a_manscdp_error() -> None:
    assert issubclass(ForbiddenXmlError, ManscdpError)
    with pytest.raises(ManscdpError):
        parse_manscdp(EXTERNAL_ENTITY.encode("gb2312"), tz=BEIJING)


def test_undefined_entity_without_dtd_is_kept_as_text_not_resolved() -> None:
    xml = KEEPALIVE.replace("<Status>OK</Status>", "<Status>&passwd;</Status>")
    msg = parse_manscdp(body(xml), tz=BEIJING)
    assert isinstance(msg, Keepalive) and msg.status == "&passwd;"


def test_records_round_trip_with_extra_fields() -> None:
    record = RecordItem(
        device_id="34020000001320000001",
        start_time=t("2026-11-21T08:00:00"),
        end_time=t("2026-11-21T09:00:00"),
        type="time",
        stream_number=1,
        extra=(("Vendor", "v"),),
    )
    msg = RecordInfoResponse(sn=1, device_id="34020000001320000001", sum_num=5, items=(record,))
    assert parse_manscdp(encode_manscdp(msg, tz=BEIJING, charset=Charset.GB18030), tz=BEIJING) == msg


def test_status_variants_from_devices() -> None:
    for text, status in (
        ("On", ItemStatus.ON),
        ("ONLINE", ItemStatus.ON),
        ("OK", ItemStatus.ON),
        ("Off", ItemStatus.OFF),
    ):
        xml = CATALOG_2016.replace("<Status>ON</Status>", f"<Status>{text}</Status>")
        msg = parse_manscdp(body(xml), tz=BEIJING)
        assert isinstance(msg, CatalogResponse) and msg.items[0].status is status


def test_gb2312_body_that_is_accidentally_valid_utf8_keeps_its_declaration() -> None:
    # Found by hypothesis: "谆" in GB2312 is D7 BB, which is also valid UTF-8 (U+05FB).
    from vigil.protocols.gb28181.charset import decode_body

    raw = '<?xml version="1.0" encoding="GB2312"?>\r\n<Notify><DeviceID>谆</DeviceID></Notify>'.encode("gb2312")
    decoded = decode_body(raw)
    assert decoded.charset is Charset.GB2312 and "谆" in decoded.text
