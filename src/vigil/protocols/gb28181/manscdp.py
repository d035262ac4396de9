"""MANSCDP bodies (``Application/MANSCDP+xml``, GB/T 28181 Annex A): typed messages, parsed and serialised.

Theory of operation:

* :func:`decode_manscdp` takes the raw MESSAGE/NOTIFY/SUBSCRIBE body, decodes it (:mod:`.charset`), parses
  it with defusedxml with DTDs forbidden (so entity expansion and external entities never happen; such a
  body raises :class:`ForbiddenXmlError`), and dispatches on root element + ``CmdType`` to one of the
  dataclasses below. A well-formed body whose root/CmdType (or DeviceControl command) we do not model
  becomes :class:`UnknownMessage` so the caller can answer 400 or ignore it; anything malformed raises
  :class:`ManscdpError`.
* :func:`encode_manscdp` writes a message in the peer's charset and GB/T 28181 version (2016 puts
  ``BusinessGroupID`` inside a catalog item's ``Info``; 2022 at item level; both are read).
* Times are ``yyyy-MM-ddTHH:mm:ss`` local time without zone (A.1; WVP ``DateUtil``): parsing attaches the
  ``tz`` passed in (fractional seconds are dropped, an explicit offset is honoured); serialising converts
  aware datetimes into ``tz``. Naive datetimes are refused on output.
* Robustness copied from WVP ``SIPRequestProcessorParent.getRootElement``: a bare ``&`` that starts no
  entity is escaped (Hikvision), and when parsing fails, ``<``/``>`` inside ``<Address>``/``<Name>`` text are
  escaped and the parse retried once (Hikvision puts ``<`` in Address).
"""

from __future__ import annotations

import enum
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, ClassVar

import defusedxml.ElementTree as DefusedET
from defusedxml import DefusedXmlException

from vigil.protocols.gb28181.charset import Charset, decode_body, encode_text
from vigil.protocols.gb28181.errors import ForbiddenXmlError, ManscdpError, PtzError
from vigil.protocols.gb28181.ptz import PtzCmd, decode_ptz_cmd

#: Largest body accepted; a 10 000-item catalog page (the Annex M maximum) is about 6 MB.
MAX_BODY_BYTES = 8 * 1024 * 1024
#: Annex M: at most 10 000 items per message.
MAX_LIST_ITEMS = 10_000
#: SN is a positive integer; devices use 32-bit counters.
MAX_SN = 2**32 - 1

_BARE_AMPERSAND = re.compile(r"&(?!(?:amp|lt|gt|quot|apos|#[0-9]{1,7}|#x[0-9A-Fa-f]{1,6});)")
_FREE_TEXT = re.compile(r"<(Address|Name)>(.*?)</\1>", re.DOTALL)
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_GB_TIME = "%Y-%m-%dT%H:%M:%S"
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")


class GbVersion(enum.Enum):
    """Which edition's spelling to write (both are always read)."""

    V2016 = "2.0"
    V2022 = "3.0"


class Root(enum.StrEnum):
    """The four MANSCDP root elements (A.1)."""

    CONTROL = "Control"
    QUERY = "Query"
    NOTIFY = "Notify"
    RESPONSE = "Response"


class Result(enum.StrEnum):
    OK = "OK"
    ERROR = "ERROR"


class ItemStatus(enum.StrEnum):
    """Catalog item / record / encode status; devices also send ``On``, ``ONLINE``, ``OK``, ``OFFLINE``."""

    ON = "ON"
    OFF = "OFF"


class CatalogEvent(enum.StrEnum):
    """Catalog NOTIFY item events (Annex N.4.3.2)."""

    ON = "ON"
    OFF = "OFF"
    VLOST = "VLOST"
    DEFECT = "DEFECT"
    ADD = "ADD"
    DEL = "DEL"
    UPDATE = "UPDATE"


class DutyStatus(enum.StrEnum):
    ONDUTY = "ONDUTY"
    OFFDUTY = "OFFDUTY"
    ALARM = "ALARM"


class PositionStyle(enum.Enum):
    """MobilePosition notify layout: 2016 flat fields, or the 2022 ``DeviceList`` (A.2.5.6)."""

    FLAT = "flat"
    LIST = "list"


# --- field codecs ------------------------------------------------------------------------------------


def _parse_int(text: str, _tz: tzinfo) -> int:
    if not _INTEGER.fullmatch(text):
        raise ManscdpError(f"expected an integer, got {text[:40]!r}")
    return int(text)


def _parse_float(text: str, _tz: tzinfo) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ManscdpError(f"expected a number, got {text[:40]!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ManscdpError(f"expected a finite number, got {text[:40]!r}")
    return value


def parse_gb_time(text: str, tz: tzinfo) -> datetime:
    """Parse ``yyyy-MM-ddTHH:mm:ss`` (also with ``.SSS``, a space for ``T``, or an explicit offset) in ``tz``."""
    value = text.strip().replace(" ", "T", 1)
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ManscdpError(f"expected a time like 2026-11-21T14:03:00, got {text[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.replace(microsecond=0)


def format_gb_time(value: datetime, tz: tzinfo) -> str:
    """``yyyy-MM-ddTHH:mm:ss`` of an aware datetime in ``tz``; raise :class:`ManscdpError` for naive ones."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ManscdpError(f"refusing to write naive datetime {value.isoformat()}: pass an aware one")
    return value.astimezone(tz).strftime(_GB_TIME)


def _parse_status(text: str, _tz: tzinfo) -> ItemStatus:
    upper = text.upper()
    if upper in ("ON", "ONLINE", "OK"):
        return ItemStatus.ON
    if upper in ("OFF", "OFFLINE"):
        return ItemStatus.OFF
    raise ManscdpError(f"expected status ON/OFF, got {text[:40]!r}")


def _enum_parser(kind: type[enum.StrEnum]) -> Callable[[str, tzinfo], Any]:
    def parse(text: str, _tz: tzinfo) -> Any:
        try:
            return kind(text.upper())
        except ValueError:
            allowed = "/".join(m.value for m in kind)
            raise ManscdpError(f"expected {kind.__name__} {allowed}, got {text[:40]!r}") from None

    return parse


def _fmt_float(value: Any, _tz: tzinfo) -> str:
    return repr(float(value))


def _fmt_str(value: Any, _tz: tzinfo) -> str:
    return str(value)


def _fmt_time(value: Any, tz: tzinfo) -> str:
    assert isinstance(value, datetime)
    return format_gb_time(value, tz)


@dataclass(frozen=True, slots=True)
class _Kind:
    parse: Callable[[str, tzinfo], Any]
    format: Callable[[Any, tzinfo], str]


_STR = _Kind(lambda text, _tz: text, _fmt_str)
_INT = _Kind(_parse_int, _fmt_str)
_FLOAT = _Kind(_parse_float, _fmt_float)
_TIME = _Kind(parse_gb_time, _fmt_time)
_STATUS = _Kind(_parse_status, _fmt_str)
_RESULT = _Kind(_enum_parser(Result), _fmt_str)
_EVENT = _Kind(_enum_parser(CatalogEvent), _fmt_str)
_DUTY = _Kind(_enum_parser(DutyStatus), _fmt_str)


@dataclass(frozen=True, slots=True)
class _F:
    """One leaf element ``tag`` ↔ dataclass attribute ``attr``."""

    tag: str
    attr: str
    kind: _Kind = _STR


def _text(el: ET.Element, tag: str) -> str | None:
    child = el.find(tag)
    if child is None or child.text is None:
        return None
    text = child.text.strip()
    return text or None


def _read(el: ET.Element, spec: Iterable[_F], tz: tzinfo, where: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in spec:
        text = _text(el, f.tag)
        if text is not None:
            try:
                values[f.attr] = f.kind.parse(text, tz)
            except ManscdpError as exc:
                raise ManscdpError(f"{where}/{f.tag}: {exc}") from None
    return values


def _extra(el: ET.Element, known: frozenset[str]) -> tuple[tuple[str, str], ...]:
    """Leaf children we do not model, kept in order so relaying an item loses nothing."""
    return tuple(
        (child.tag, (child.text or "").strip())
        for child in el
        if isinstance(child.tag, str) and child.tag not in known and len(child) == 0
    )


def _put(parent: ET.Element, tag: str, text: str | None) -> None:
    if text is None:
        return
    if _XML_ILLEGAL.search(text):
        raise ManscdpError(f"<{tag}> value contains characters XML 1.0 cannot carry: {text[:40]!r}")
    ET.SubElement(parent, tag).text = text


def _write(parent: ET.Element, obj: object, spec: Iterable[_F], tz: tzinfo) -> None:
    for f in spec:
        value = getattr(obj, f.attr)
        if value is not None:
            _put(parent, f.tag, f.kind.format(value, tz))


def _write_extra(parent: ET.Element, extra: tuple[tuple[str, str], ...]) -> None:
    for tag, text in extra:
        _put(parent, tag, text)


# --- catalog items -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogInfo:
    """A catalog item's ``<Info>`` extension (A.2.1.9): 2016 and 2022 fields, plus any others verbatim."""

    ptz_type: int | None = (
        None  # 1 dome, 2 half-dome, 3 fixed bullet, 4 remote bullet, 5 remote half-dome, 6/7 multi-lens
    )
    photoelectric_imaging_type: str | None = None  # 2022
    capture_position_type: str | None = None  # 2022
    position_type: int | None = None  # 2016
    room_type: int | None = None
    use_type: int | None = None  # 2016
    supply_light_type: int | None = None
    direction_type: int | None = None
    resolution: str | None = None
    stream_number_list: str | None = None  # 2022
    download_speed: str | None = None
    svc_space_support_mode: int | None = None
    svc_time_support_mode: int | None = None
    ssvc_ratio_support_list: str | None = None  # 2022
    mobile_device_type: int | None = None  # 2022
    horizontal_field_angle: float | None = None  # 2022
    vertical_field_angle: float | None = None  # 2022
    max_view_distance: float | None = None  # 2022
    grassroots_code: str | None = None  # 2022
    point_type: int | None = None  # 2022
    point_common_name: str | None = None  # 2022
    mac: str | None = None  # 2022
    function_type: str | None = None  # 2022
    encode_type: str | None = None  # 2022
    install_time: str | None = None  # 2022; kept as text, devices write it in several formats
    management_unit: str | None = None  # 2022
    contact_info: str | None = None  # 2022
    record_save_days: int | None = None  # 2022
    industrial_classification: str | None = None  # 2022
    extra: tuple[tuple[str, str], ...] = ()


_INFO_SPEC = (
    _F("PTZType", "ptz_type", _INT),
    _F("PhotoelectricImagingType", "photoelectric_imaging_type"),
    _F("CapturePositionType", "capture_position_type"),
    _F("PositionType", "position_type", _INT),
    _F("RoomType", "room_type", _INT),
    _F("UseType", "use_type", _INT),
    _F("SupplyLightType", "supply_light_type", _INT),
    _F("DirectionType", "direction_type", _INT),
    _F("Resolution", "resolution"),
    _F("StreamNumberList", "stream_number_list"),
    _F("DownloadSpeed", "download_speed"),
    _F("SVCSpaceSupportMode", "svc_space_support_mode", _INT),
    _F("SVCTimeSupportMode", "svc_time_support_mode", _INT),
    _F("SSVCRatioSupportList", "ssvc_ratio_support_list"),
    _F("MobileDeviceType", "mobile_device_type", _INT),
    _F("HorizontalFieldAngle", "horizontal_field_angle", _FLOAT),
    _F("VerticalFieldAngle", "vertical_field_angle", _FLOAT),
    _F("MaxViewDistance", "max_view_distance", _FLOAT),
    _F("GrassrootsCode", "grassroots_code"),
    _F("PointType", "point_type", _INT),
    _F("PointCommonName", "point_common_name"),
    _F("MAC", "mac"),
    _F("FunctionType", "function_type"),
    _F("EncodeType", "encode_type"),
    _F("InstallTime", "install_time"),
    _F("ManagementUnit", "management_unit"),
    _F("ContactInfo", "contact_info"),
    _F("RecordSaveDays", "record_save_days", _INT),
    _F("IndustrialClassification", "industrial_classification"),
)
# BusinessGroupID sits in Info in 2016 items; it is lifted to CatalogItem.business_group_id.
_INFO_KNOWN = frozenset({f.tag for f in _INFO_SPEC} | {"BusinessGroupID"})


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogItem:
    """One ``<Item>`` of a catalog response or NOTIFY (A.2.1.9); ``event`` is set only in NOTIFY items."""

    device_id: str
    name: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    owner: str | None = None  # 2016
    civil_code: str | None = None
    block: str | None = None
    address: str | None = None
    parental: int | None = None
    parent_id: str | None = None  # may be "a/b" (parent device + virtual organisation)
    safety_way: int | None = None  # 2016
    register_way: int | None = None
    security_level_code: str | None = None  # 2022
    cert_num: str | None = None  # 2016
    certifiable: int | None = None  # 2016
    err_code: int | None = None  # 2016
    end_time: str | None = None  # 2016 certificate end; kept as text
    secrecy: int | None = None
    ip_address: str | None = None
    port: int | None = None
    password: str | None = None
    status: ItemStatus | None = None
    longitude: float | None = None
    latitude: float | None = None
    business_group_id: str | None = None
    info: CatalogInfo | None = None
    event: CatalogEvent | None = None
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def ptz_type(self) -> int | None:
        """``Info/PTZType`` (also read from item level, where some 2016 devices put it)."""
        return self.info.ptz_type if self.info else None


_ITEM_SPEC = (
    _F("DeviceID", "device_id"),
    _F("Name", "name"),
    _F("Manufacturer", "manufacturer"),
    _F("Model", "model"),
    _F("Owner", "owner"),
    _F("CivilCode", "civil_code"),
    _F("Block", "block"),
    _F("Address", "address"),
    _F("Parental", "parental", _INT),
    _F("ParentID", "parent_id"),
    _F("SafetyWay", "safety_way", _INT),
    _F("RegisterWay", "register_way", _INT),
    _F("SecurityLevelCode", "security_level_code"),
    _F("CertNum", "cert_num"),
    _F("Certifiable", "certifiable", _INT),
    _F("ErrCode", "err_code", _INT),
    _F("EndTime", "end_time"),
    _F("Secrecy", "secrecy", _INT),
    _F("IPAddress", "ip_address"),
    _F("Port", "port", _INT),
    _F("Password", "password"),
    _F("Status", "status", _STATUS),
    _F("Longitude", "longitude", _FLOAT),
    _F("Latitude", "latitude", _FLOAT),
)
_ITEM_KNOWN = frozenset({f.tag for f in _ITEM_SPEC} | {"BusinessGroupID", "Info", "Event", "PTZType"})


def _read_catalog_item(el: ET.Element, tz: tzinfo) -> CatalogItem:
    values = _read(el, _ITEM_SPEC, tz, "Item")
    if "device_id" not in values:
        raise ManscdpError("catalog Item without DeviceID")
    info_el = el.find("Info")
    info_values: dict[str, Any] = {}
    info_extra: tuple[tuple[str, str], ...] = ()
    if info_el is not None:
        info_values = _read(info_el, _INFO_SPEC, tz, "Item/Info")
        info_extra = _extra(info_el, _INFO_KNOWN)
    top_ptz = _text(el, "PTZType")
    if top_ptz is not None and "ptz_type" not in info_values:
        info_values["ptz_type"] = _parse_int(top_ptz, tz)
    if info_values or info_extra:
        values["info"] = CatalogInfo(**info_values, extra=info_extra)
    group = _text(el, "BusinessGroupID") or (_text(info_el, "BusinessGroupID") if info_el is not None else None)
    if group is not None:
        values["business_group_id"] = group
    event = _text(el, "Event")
    if event is not None:
        values["event"] = _EVENT.parse(event, tz)
    return CatalogItem(**values, extra=_extra(el, _ITEM_KNOWN))


def _write_catalog_item(parent: ET.Element, item: CatalogItem, tz: tzinfo, version: GbVersion) -> None:
    el = ET.SubElement(parent, "Item")
    _write(el, item, _ITEM_SPEC, tz)
    if version is GbVersion.V2022:
        _put(el, "BusinessGroupID", item.business_group_id)
    info_group = item.business_group_id if version is GbVersion.V2016 else None
    if item.info is not None or info_group is not None:
        info_el = ET.SubElement(el, "Info")
        if item.info is not None:
            _write(info_el, item.info, _INFO_SPEC, tz)
            _write_extra(info_el, item.info.extra)
        _put(info_el, "BusinessGroupID", info_group)
    _write_extra(el, item.extra)
    if item.event is not None:
        _put(el, "Event", item.event.value)


# --- messages ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Keepalive:
    """Device → platform heartbeat (9.6, A.2.5.2); ``faulty_device_ids`` are ``Info/DeviceID`` entries."""

    ROOT: ClassVar[Root] = Root.NOTIFY
    CMD_TYPE: ClassVar[str] = "Keepalive"
    sn: int
    device_id: str
    status: str = "OK"
    faulty_device_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogQuery:
    """Catalog query or subscription body (A.2.4.3)."""

    ROOT: ClassVar[Root] = Root.QUERY
    CMD_TYPE: ClassVar[str] = "Catalog"
    sn: int
    device_id: str
    start_time: datetime | None = None
    end_time: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogResponse:
    """One page of a catalog response (A.2.6.4, Annex M): ``sum_num`` is the grand total over all pages."""

    ROOT: ClassVar[Root] = Root.RESPONSE
    CMD_TYPE: ClassVar[str] = "Catalog"
    sn: int
    device_id: str
    sum_num: int
    items: tuple[CatalogItem, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogNotify:
    """Catalog change NOTIFY (Annex N.4.3.2): items carry ``event``; ADD/UPDATE items carry full fields."""

    ROOT: ClassVar[Root] = Root.NOTIFY
    CMD_TYPE: ClassVar[str] = "Catalog"
    sn: int
    device_id: str
    sum_num: int
    items: tuple[CatalogItem, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceInfoQuery:
    ROOT: ClassVar[Root] = Root.QUERY
    CMD_TYPE: ClassVar[str] = "DeviceInfo"
    sn: int
    device_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceInfoResponse:
    """A.2.6.5."""

    ROOT: ClassVar[Root] = Root.RESPONSE
    CMD_TYPE: ClassVar[str] = "DeviceInfo"
    sn: int
    device_id: str
    result: Result | None = None
    device_name: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    firmware: str | None = None
    channel: int | None = None
    extra: tuple[tuple[str, str], ...] = ()


_DEVICE_INFO_SPEC = (
    _F("DeviceName", "device_name"),
    _F("Result", "result", _RESULT),
    _F("Manufacturer", "manufacturer"),
    _F("Model", "model"),
    _F("Firmware", "firmware"),
    _F("Channel", "channel", _INT),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceStatusQuery:
    ROOT: ClassVar[Root] = Root.QUERY
    CMD_TYPE: ClassVar[str] = "DeviceStatus"
    sn: int
    device_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AlarmStatus:
    device_id: str
    duty_status: DutyStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceStatusResponse:
    """A.2.6.6; ``online`` is ONLINE/OFFLINE, ``status`` OK/ERROR (device working normally)."""

    ROOT: ClassVar[Root] = Root.RESPONSE
    CMD_TYPE: ClassVar[str] = "DeviceStatus"
    sn: int
    device_id: str
    result: Result | None = None
    online: bool | None = None
    status: Result | None = None
    reason: str | None = None
    encode: ItemStatus | None = None
    record: ItemStatus | None = None
    device_time: datetime | None = None
    alarm_status: tuple[AlarmStatus, ...] = ()


_DEVICE_STATUS_SPEC = (
    _F("Result", "result", _RESULT),
    _F("Status", "status", _RESULT),
    _F("Reason", "reason"),
    _F("Encode", "encode", _STATUS),
    _F("Record", "record", _STATUS),
    _F("DeviceTime", "device_time", _TIME),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordInfoQuery:
    """Recording search (A.2.4.5); WVP always sends Secrecy 0 and Type all (Dahua NVRs require it)."""

    ROOT: ClassVar[Root] = Root.QUERY
    CMD_TYPE: ClassVar[str] = "RecordInfo"
    sn: int
    device_id: str
    start_time: datetime
    end_time: datetime
    file_path: str | None = None
    address: str | None = None
    secrecy: int | None = 0
    type: str | None = "all"
    recorder_id: str | None = None
    indistinct_query: int | None = None
    stream_number: int | None = None  # 2022
    alarm_method: str | None = None  # 2022
    alarm_type: str | None = None  # 2022


_RECORD_QUERY_SPEC = (
    _F("StartTime", "start_time", _TIME),
    _F("EndTime", "end_time", _TIME),
    _F("FilePath", "file_path"),
    _F("Address", "address"),
    _F("Secrecy", "secrecy", _INT),
    _F("Type", "type"),
    _F("RecorderID", "recorder_id"),
    _F("IndistinctQuery", "indistinct_query", _INT),
    _F("StreamNumber", "stream_number", _INT),
    _F("AlarmMethod", "alarm_method"),
    _F("AlarmType", "alarm_type"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordItem:
    """One recording of a RecordInfo response (A.2.6.7)."""

    device_id: str | None = None
    name: str | None = None
    file_path: str | None = None
    address: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    secrecy: int | None = None
    type: str | None = None
    recorder_id: str | None = None
    file_size: int | None = None
    stream_number: int | None = None
    extra: tuple[tuple[str, str], ...] = ()


_RECORD_ITEM_SPEC = (
    _F("DeviceID", "device_id"),
    _F("Name", "name"),
    _F("FilePath", "file_path"),
    _F("Address", "address"),
    _F("StartTime", "start_time", _TIME),
    _F("EndTime", "end_time", _TIME),
    _F("Secrecy", "secrecy", _INT),
    _F("Type", "type"),
    _F("RecorderID", "recorder_id"),
    _F("FileSize", "file_size", _INT),
    _F("StreamNumber", "stream_number", _INT),
)
_RECORD_ITEM_KNOWN = frozenset(f.tag for f in _RECORD_ITEM_SPEC)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordInfoResponse:
    """One page of a RecordInfo response (A.2.6.7, Annex M)."""

    ROOT: ClassVar[Root] = Root.RESPONSE
    CMD_TYPE: ClassVar[str] = "RecordInfo"
    sn: int
    device_id: str
    sum_num: int
    name: str | None = None
    items: tuple[RecordItem, ...] = ()


# DeviceControl commands (A.2.3.1): one per message.


@dataclass(frozen=True, slots=True, kw_only=True)
class PtzControl:
    """``<PTZCmd>`` plus the 2022 ``<PTZCmdParams>`` names."""

    cmd: PtzCmd
    preset_name: str | None = None
    cruise_track_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TeleBoot:
    """``<TeleBoot>Boot</TeleBoot>``: remote restart (no Response)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordControl:
    """``<RecordCmd>Record|StopRecord</RecordCmd>`` (answered with a Response)."""

    record: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardControl:
    """``<GuardCmd>SetGuard|ResetGuard</GuardCmd>`` (answered with a Response)."""

    guard: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class AlarmReset:
    """``<AlarmCmd>ResetAlarm</AlarmCmd>`` with optional ``Info/AlarmMethod``, ``Info/AlarmType``."""

    alarm_method: str | None = None
    alarm_type: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class IFrameControl:
    """Force a key frame. STD22 spells the element ``IFrameCmd``, WVP ``IFameCmd``: both read, ``tag`` written."""

    tag: str = "IFrameCmd"


ControlCommand = PtzControl | TeleBoot | RecordControl | GuardControl | AlarmReset | IFrameControl


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceControl:
    """A ``<Control><CmdType>DeviceControl</CmdType>`` carrying one command; ``Info/ControlPriority`` optional."""

    ROOT: ClassVar[Root] = Root.CONTROL
    CMD_TYPE: ClassVar[str] = "DeviceControl"
    sn: int
    device_id: str
    command: ControlCommand
    control_priority: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AlarmNotify:
    """Device alarm (A.2.5.3); ``method`` 1 phone … 7 other, ``alarm_type``/``event_type`` from ``Info``."""

    ROOT: ClassVar[Root] = Root.NOTIFY
    CMD_TYPE: ClassVar[str] = "Alarm"
    sn: int
    device_id: str
    priority: int
    method: int
    time: datetime
    description: str | None = None
    longitude: float | None = None
    latitude: float | None = None
    alarm_type: int | None = None
    event_type: int | None = None


_ALARM_SPEC = (
    _F("AlarmPriority", "priority", _INT),
    _F("AlarmMethod", "method", _INT),
    _F("AlarmTime", "time", _TIME),
    _F("AlarmDescription", "description"),
    _F("Longitude", "longitude", _FLOAT),
    _F("Latitude", "latitude", _FLOAT),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultResponse:
    """A ``<Response>`` that only says ``Result`` OK/ERROR: DeviceControl (record/guard/alarm reset),
    Alarm (9.4.2 step 4), Broadcast, DeviceConfig, and SUBSCRIBE answers (Catalog/MobilePosition/Alarm)."""

    ROOT: ClassVar[Root] = Root.RESPONSE
    cmd_type: str
    sn: int
    device_id: str
    result: Result


#: CmdTypes whose Response is just a Result.
RESULT_CMD_TYPES = frozenset({"DeviceControl", "Alarm", "Broadcast", "DeviceConfig", "MobilePosition", "Catalog"})


@dataclass(frozen=True, slots=True, kw_only=True)
class AlarmQuery:
    """Alarm query or subscription body (A.2.4.6): every filter optional; priorities 1 (highest) … 4."""

    ROOT: ClassVar[Root] = Root.QUERY
    CMD_TYPE: ClassVar[str] = "Alarm"
    sn: int
    device_id: str
    start_priority: int | None = None
    end_priority: int | None = None
    #: One method or several run together, e.g. "1/2/5" (A.2.4.6 allows a "/" list).
    alarm_method: str | None = None
    alarm_type: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None


_ALARM_QUERY_SPEC = (
    _F("StartAlarmPriority", "start_priority", _INT),
    _F("EndAlarmPriority", "end_priority", _INT),
    _F("AlarmMethod", "alarm_method"),
    _F("AlarmType", "alarm_type"),
    _F("StartAlarmTime", "start_time", _TIME),
    _F("EndAlarmTime", "end_time", _TIME),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class MobilePositionQuery:
    """Position query/subscription body (A.2.4.9); ``interval`` in seconds, default 5."""

    ROOT: ClassVar[Root] = Root.QUERY
    CMD_TYPE: ClassVar[str] = "MobilePosition"
    sn: int
    device_id: str
    interval: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MobilePosition:
    """One position: ``speed`` km/h, ``direction`` degrees from north, ``altitude``/``height`` metres."""

    device_id: str
    time: datetime
    longitude: float
    latitude: float
    speed: float | None = None
    direction: float | None = None
    altitude: float | None = None
    height: float | None = None


_POSITION_FLAT_SPEC = (
    _F("Time", "time", _TIME),
    _F("Longitude", "longitude", _FLOAT),
    _F("Latitude", "latitude", _FLOAT),
    _F("Speed", "speed", _FLOAT),
    _F("Direction", "direction", _FLOAT),
    _F("Altitude", "altitude", _FLOAT),
)
_POSITION_ITEM_SPEC = (
    _F("DeviceID", "device_id"),
    _F("CaptureTime", "time", _TIME),
    _F("Longitude", "longitude", _FLOAT),
    _F("Latitude", "latitude", _FLOAT),
    _F("Speed", "speed", _FLOAT),
    _F("Direction", "direction", _FLOAT),
    _F("Altitude", "altitude", _FLOAT),
    _F("Height", "height", _FLOAT),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class MobilePositionNotify:
    """Position report: 2016 flat (one position of ``device_id``) or 2022 list (A.2.5.6); ``style`` says which."""

    ROOT: ClassVar[Root] = Root.NOTIFY
    CMD_TYPE: ClassVar[str] = "MobilePosition"
    sn: int
    device_id: str
    positions: tuple[MobilePosition, ...]
    style: PositionStyle = PositionStyle.LIST
    time: datetime | None = None  # 2022 message-level Time


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaStatusNotify:
    """End of a history stream (A.2.5.4): ``NotifyType`` 121; the platform then sends BYE."""

    ROOT: ClassVar[Root] = Root.NOTIFY
    CMD_TYPE: ClassVar[str] = "MediaStatus"
    sn: int
    device_id: str
    notify_type: str = "121"


@dataclass(frozen=True, slots=True, kw_only=True)
class BroadcastNotify:
    """Voice broadcast invitation (9.12): platform ``source_id`` → voice-output channel ``target_id``."""

    ROOT: ClassVar[Root] = Root.NOTIFY
    CMD_TYPE: ClassVar[str] = "Broadcast"
    sn: int
    source_id: str
    target_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownMessage:
    """A well-formed body we do not model (root/CmdType, or a DeviceControl command): answer 400 or ignore."""

    root: str
    cmd_type: str
    sn: int | None
    device_id: str | None
    reason: str


Message = (
    Keepalive
    | CatalogQuery
    | CatalogResponse
    | CatalogNotify
    | DeviceInfoQuery
    | DeviceInfoResponse
    | DeviceStatusQuery
    | DeviceStatusResponse
    | RecordInfoQuery
    | RecordInfoResponse
    | DeviceControl
    | AlarmNotify
    | ResultResponse
    | AlarmQuery
    | MobilePositionQuery
    | MobilePositionNotify
    | MediaStatusNotify
    | BroadcastNotify
    | UnknownMessage
)


@dataclass(frozen=True, slots=True)
class Decoded:
    """A parsed body and the charset the peer wrote it in (reply in the same)."""

    message: Message
    charset: Charset


# --- parsing -----------------------------------------------------------------------------------------


def _xml(text: str) -> ET.Element:
    """Parse with defusedxml, DTDs forbidden; WVP's Hikvision repairs on the way (module docstring)."""
    text = _BARE_AMPERSAND.sub("&amp;", text)
    try:
        return _defused(text)
    except ET.ParseError as first:
        repaired = _FREE_TEXT.sub(lambda m: f"<{m[1]}>{_escape_angles(m[2])}</{m[1]}>", text)
        if repaired == text:
            raise ManscdpError(f"MANSCDP body is not well-formed XML: {first}") from None
        try:
            return _defused(repaired)
        except ET.ParseError:
            raise ManscdpError(f"MANSCDP body is not well-formed XML: {first}") from None


def _escape_angles(text: str) -> str:
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _defused(text: str) -> ET.Element:
    try:
        root = DefusedET.fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise ForbiddenXmlError(f"MANSCDP body refused: {exc!r} (DTDs and entities are never processed)") from None
    except RecursionError:
        raise ManscdpError("MANSCDP body nests too deeply") from None
    assert isinstance(root, ET.Element)
    return root


def _sn(el: ET.Element) -> int:
    text = _text(el, "SN")
    if text is None:
        raise ManscdpError("MANSCDP message without SN")
    if not text.isascii() or not text.isdigit() or int(text) > MAX_SN:
        raise ManscdpError(f"SN must be an integer 0..{MAX_SN}, got {text[:40]!r}")
    return int(text)


def _device_id(el: ET.Element) -> str:
    text = _text(el, "DeviceID")
    if text is None:
        raise ManscdpError("MANSCDP message without DeviceID")
    return text


def _required(values: dict[str, Any], attr: str, where: str) -> None:
    if attr not in values:
        raise ManscdpError(f"{where} is missing a required field ({attr})")


def _list(el: ET.Element, tag: str) -> list[ET.Element]:
    """The ``<Item>`` children of a ``<DeviceList>``/``<RecordList>``; Num is advisory (devices get it wrong)."""
    holder = el.find(tag)
    if holder is None:
        return []
    items = holder.findall("Item")
    if len(items) > MAX_LIST_ITEMS:
        raise ManscdpError(f"<{tag}> has {len(items)} items; Annex M allows at most {MAX_LIST_ITEMS}")
    return items


def _sum_num(el: ET.Element, tz: tzinfo, count: int) -> int:
    text = _text(el, "SumNum")
    if text is None:
        return count  # some NOTIFY senders omit it; Annex N says SumNum = Num there
    value: int = _INT.parse(text, tz)
    if value < 0:
        raise ManscdpError(f"SumNum must not be negative, got {value}")
    return value


def _parse_keepalive(el: ET.Element, tz: tzinfo) -> Keepalive:
    info = el.find("Info")
    faulty = (
        tuple(t for t in ((c.text or "").strip() for c in info.findall("DeviceID")) if t) if info is not None else ()
    )
    return Keepalive(sn=_sn(el), device_id=_device_id(el), status=_text(el, "Status") or "OK", faulty_device_ids=faulty)


def _parse_catalog_query(el: ET.Element, tz: tzinfo) -> CatalogQuery:
    values = _read(el, (_F("StartTime", "start_time", _TIME), _F("EndTime", "end_time", _TIME)), tz, "Catalog")
    return CatalogQuery(sn=_sn(el), device_id=_device_id(el), **values)


def _parse_catalog_items(el: ET.Element, tz: tzinfo) -> tuple[CatalogItem, ...]:
    return tuple(_read_catalog_item(item, tz) for item in _list(el, "DeviceList"))


def _parse_catalog_response(el: ET.Element, tz: tzinfo) -> CatalogResponse | ResultResponse:
    if _text(el, "SumNum") is None and _text(el, "Result") is not None:
        return _parse_result(el, tz)
    if _text(el, "SumNum") is None:
        raise ManscdpError("catalog Response without SumNum")
    items = _parse_catalog_items(el, tz)
    return CatalogResponse(sn=_sn(el), device_id=_device_id(el), sum_num=_sum_num(el, tz, len(items)), items=items)


def _parse_catalog_notify(el: ET.Element, tz: tzinfo) -> CatalogNotify:
    items = _parse_catalog_items(el, tz)
    return CatalogNotify(sn=_sn(el), device_id=_device_id(el), sum_num=_sum_num(el, tz, len(items)), items=items)


def _parse_device_info_query(el: ET.Element, tz: tzinfo) -> DeviceInfoQuery:
    return DeviceInfoQuery(sn=_sn(el), device_id=_device_id(el))


def _parse_device_info_response(el: ET.Element, tz: tzinfo) -> DeviceInfoResponse:
    values = _read(el, _DEVICE_INFO_SPEC, tz, "DeviceInfo")
    known = frozenset({f.tag for f in _DEVICE_INFO_SPEC} | {"CmdType", "SN", "DeviceID"})
    return DeviceInfoResponse(sn=_sn(el), device_id=_device_id(el), **values, extra=_extra(el, known))


def _parse_device_status_query(el: ET.Element, tz: tzinfo) -> DeviceStatusQuery:
    return DeviceStatusQuery(sn=_sn(el), device_id=_device_id(el))


def _parse_device_status_response(el: ET.Element, tz: tzinfo) -> DeviceStatusResponse:
    values = _read(el, _DEVICE_STATUS_SPEC, tz, "DeviceStatus")
    online = _text(el, "Online")
    if online is not None:
        values["online"] = _parse_status(online, tz) is ItemStatus.ON
    alarms: list[AlarmStatus] = []
    holder = el.find("Alarmstatus")
    if holder is not None:
        for item in holder.findall("Item"):
            device = _text(item, "DeviceID")
            duty = _text(item, "DutyStatus")
            if device is None or duty is None:
                raise ManscdpError("DeviceStatus Alarmstatus Item needs DeviceID and DutyStatus")
            alarms.append(AlarmStatus(device_id=device, duty_status=_DUTY.parse(duty, tz)))
    return DeviceStatusResponse(sn=_sn(el), device_id=_device_id(el), **values, alarm_status=tuple(alarms))


def _parse_record_query(el: ET.Element, tz: tzinfo) -> RecordInfoQuery:
    values = _read(el, _RECORD_QUERY_SPEC, tz, "RecordInfo")
    _required(values, "start_time", "RecordInfo query")
    _required(values, "end_time", "RecordInfo query")
    values.setdefault("secrecy", None)
    values.setdefault("type", None)
    return RecordInfoQuery(sn=_sn(el), device_id=_device_id(el), **values)


def _parse_record_response(el: ET.Element, tz: tzinfo) -> RecordInfoResponse:
    items = tuple(
        RecordItem(**_read(item, _RECORD_ITEM_SPEC, tz, "RecordList/Item"), extra=_extra(item, _RECORD_ITEM_KNOWN))
        for item in _list(el, "RecordList")
    )
    if _text(el, "SumNum") is None:
        raise ManscdpError("RecordInfo Response without SumNum")
    return RecordInfoResponse(
        sn=_sn(el), device_id=_device_id(el), sum_num=_sum_num(el, tz, len(items)), name=_text(el, "Name"), items=items
    )


def _parse_device_control(el: ET.Element, tz: tzinfo) -> DeviceControl | UnknownMessage:
    sn, device_id = _sn(el), _device_id(el)
    info = el.find("Info")
    priority_text = _text(info, "ControlPriority") if info is not None else None
    priority = _parse_int(priority_text, tz) if priority_text is not None else None
    command: ControlCommand
    if (ptz := _text(el, "PTZCmd")) is not None:
        try:
            cmd = decode_ptz_cmd(ptz)
        except PtzError as exc:
            raise ManscdpError(f"DeviceControl/PTZCmd: {exc}") from None
        params = el.find("PTZCmdParams")
        command = PtzControl(
            cmd=cmd,
            preset_name=_text(params, "PresetName") if params is not None else None,
            cruise_track_name=_text(params, "CruiseTrackName") if params is not None else None,
        )
    elif (boot := _text(el, "TeleBoot")) is not None:
        _expect(boot, ("Boot",), "TeleBoot")
        command = TeleBoot()
    elif (record := _text(el, "RecordCmd")) is not None:
        command = RecordControl(record=_expect(record, ("Record", "StopRecord"), "RecordCmd") == "Record")
    elif (guard := _text(el, "GuardCmd")) is not None:
        command = GuardControl(guard=_expect(guard, ("SetGuard", "ResetGuard"), "GuardCmd") == "SetGuard")
    elif (alarm := _text(el, "AlarmCmd")) is not None:
        _expect(alarm, ("ResetAlarm",), "AlarmCmd")
        command = AlarmReset(
            alarm_method=_text(info, "AlarmMethod") if info is not None else None,
            alarm_type=_text(info, "AlarmType") if info is not None else None,
        )
    elif (tag := next((t for t in ("IFrameCmd", "IFameCmd") if el.find(t) is not None), None)) is not None:
        _expect(_text(el, tag) or "", ("Send",), tag)
        command = IFrameControl(tag=tag)
    else:
        commands = [c.tag for c in el if c.tag not in ("CmdType", "SN", "DeviceID", "Info")]
        return UnknownMessage(
            root=Root.CONTROL.value,
            cmd_type="DeviceControl",
            sn=sn,
            device_id=device_id,
            reason=f"unsupported DeviceControl command {commands[:3]}",
        )
    return DeviceControl(sn=sn, device_id=device_id, command=command, control_priority=priority)


def _expect(text: str, allowed: tuple[str, ...], tag: str) -> str:
    for value in allowed:
        if text.lower() == value.lower():
            return value
    raise ManscdpError(f"<{tag}> must be {'/'.join(allowed)}, got {text[:40]!r}")


def _parse_alarm(el: ET.Element, tz: tzinfo) -> AlarmNotify:
    values = _read(el, _ALARM_SPEC, tz, "Alarm")
    for attr in ("priority", "method", "time"):
        _required(values, attr, "Alarm notify")
    info = el.find("Info")
    if info is not None:
        values.update(_read(info, (_F("AlarmType", "alarm_type", _INT),), tz, "Alarm/Info"))
        param = info.find("AlarmTypeParam")
        if param is not None:
            values.update(_read(param, (_F("EventType", "event_type", _INT),), tz, "Alarm/Info/AlarmTypeParam"))
    return AlarmNotify(sn=_sn(el), device_id=_device_id(el), **values)


def _parse_result(el: ET.Element, tz: tzinfo) -> ResultResponse:
    cmd_type = _text(el, "CmdType") or ""
    result = _text(el, "Result")
    if result is None:
        raise ManscdpError(f"{cmd_type} Response without Result")
    return ResultResponse(cmd_type=cmd_type, sn=_sn(el), device_id=_device_id(el), result=_RESULT.parse(result, tz))


def _parse_alarm_query(el: ET.Element, tz: tzinfo) -> AlarmQuery:
    return AlarmQuery(sn=_sn(el), device_id=_device_id(el), **_read(el, _ALARM_QUERY_SPEC, tz, "Alarm query"))


def _parse_position_query(el: ET.Element, tz: tzinfo) -> MobilePositionQuery:
    values = _read(el, (_F("Interval", "interval", _INT),), tz, "MobilePosition")
    return MobilePositionQuery(sn=_sn(el), device_id=_device_id(el), **values)


def _parse_position_notify(el: ET.Element, tz: tzinfo) -> MobilePositionNotify:
    sn, device_id = _sn(el), _device_id(el)
    if el.find("DeviceList") is not None:
        positions = []
        for item in _list(el, "DeviceList"):
            values = _read(item, _POSITION_ITEM_SPEC, tz, "MobilePosition/Item")
            values.setdefault("device_id", device_id)
            for attr in ("time", "longitude", "latitude"):
                _required(values, attr, "MobilePosition Item")
            positions.append(MobilePosition(**values))
        time = _read(el, (_F("Time", "time", _TIME),), tz, "MobilePosition").get("time")
        return MobilePositionNotify(
            sn=sn, device_id=device_id, positions=tuple(positions), style=PositionStyle.LIST, time=time
        )
    values = _read(el, _POSITION_FLAT_SPEC, tz, "MobilePosition")
    for attr in ("time", "longitude", "latitude"):
        _required(values, attr, "MobilePosition notify")
    position = MobilePosition(device_id=device_id, **values)
    return MobilePositionNotify(sn=sn, device_id=device_id, positions=(position,), style=PositionStyle.FLAT)


def _parse_media_status(el: ET.Element, tz: tzinfo) -> MediaStatusNotify:
    return MediaStatusNotify(sn=_sn(el), device_id=_device_id(el), notify_type=_text(el, "NotifyType") or "121")


def _parse_broadcast(el: ET.Element, tz: tzinfo) -> BroadcastNotify:
    source, target = _text(el, "SourceID"), _text(el, "TargetID")
    if source is None or target is None:
        raise ManscdpError("Broadcast notify needs SourceID and TargetID")
    return BroadcastNotify(sn=_sn(el), source_id=source, target_id=target)


_PARSERS: dict[tuple[str, str], Callable[[ET.Element, tzinfo], Message]] = {
    ("notify", "keepalive"): _parse_keepalive,
    ("query", "catalog"): _parse_catalog_query,
    ("response", "catalog"): _parse_catalog_response,
    ("notify", "catalog"): _parse_catalog_notify,
    ("query", "deviceinfo"): _parse_device_info_query,
    ("response", "deviceinfo"): _parse_device_info_response,
    ("query", "devicestatus"): _parse_device_status_query,
    ("response", "devicestatus"): _parse_device_status_response,
    ("query", "recordinfo"): _parse_record_query,
    ("response", "recordinfo"): _parse_record_response,
    ("control", "devicecontrol"): _parse_device_control,
    ("notify", "alarm"): _parse_alarm,
    ("query", "alarm"): _parse_alarm_query,
    ("query", "mobileposition"): _parse_position_query,
    ("notify", "mobileposition"): _parse_position_notify,
    ("notify", "mediastatus"): _parse_media_status,
    ("notify", "broadcast"): _parse_broadcast,
}


def decode_manscdp(body: bytes, *, tz: tzinfo, charset: Charset | None = None) -> Decoded:
    """Parse a MANSCDP body; ``charset`` is the peer's configured one (a hint). Raise :class:`ManscdpError`."""
    if len(body) > MAX_BODY_BYTES:
        raise ManscdpError(f"MANSCDP body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
    decoded = decode_body(body, charset)
    root = _xml(decoded.text)
    return Decoded(_dispatch(root, tz), decoded.charset)


def parse_manscdp(body: bytes, *, tz: tzinfo, charset: Charset | None = None) -> Message:
    """:func:`decode_manscdp` without the charset."""
    return decode_manscdp(body, tz=tz, charset=charset).message


def _dispatch(root: ET.Element, tz: tzinfo) -> Message:
    root_name = root.tag if isinstance(root.tag, str) else ""
    cmd_type = _text(root, "CmdType")
    if cmd_type is None:
        raise ManscdpError(f"<{root_name[:40]}> without CmdType")
    key = (root_name.lower(), cmd_type.lower())
    parser = _PARSERS.get(key)
    if parser is None and key[0] == "response" and cmd_type in RESULT_CMD_TYPES:
        parser = _parse_result
    if parser is None:
        sn_text = _text(root, "SN")
        return UnknownMessage(
            root=root_name,
            cmd_type=cmd_type,
            sn=int(sn_text) if sn_text and sn_text.isascii() and sn_text.isdigit() else None,
            device_id=_text(root, "DeviceID"),
            reason=f"no handler for <{root_name[:40]}> CmdType {cmd_type[:40]!r}",
        )
    return parser(root, tz)


# --- serialising -------------------------------------------------------------------------------------


def encode_manscdp(
    message: Message,
    *,
    tz: tzinfo,
    charset: Charset = Charset.GB2312,
    version: GbVersion = GbVersion.V2022,
) -> bytes:
    """Serialise in the peer's charset (upgraded to GB 18030 if a character needs it) and edition."""
    if isinstance(message, UnknownMessage):
        raise ManscdpError("an UnknownMessage cannot be serialised")
    root_name = message.ROOT.value
    cmd_type = message.cmd_type if isinstance(message, ResultResponse) else message.CMD_TYPE
    root = ET.Element(root_name)
    _put(root, "CmdType", cmd_type)
    _put(root, "SN", str(message.sn))
    _BODY_WRITERS[type(message)](root, message, tz, version)
    ET.indent(root, space="")
    body, _declared = encode_text(ET.tostring(root, encoding="unicode") + "\r\n", charset)
    return body


def _w_keepalive(root: ET.Element, m: Any, tz: tzinfo, _v: GbVersion) -> None:
    _put(root, "DeviceID", m.device_id)
    _put(root, "Status", m.status)
    if m.faulty_device_ids:
        info = ET.SubElement(root, "Info")
        for device in m.faulty_device_ids:
            _put(info, "DeviceID", device)


def _w_device(root: ET.Element, m: Any, tz: tzinfo, _v: GbVersion) -> None:
    _put(root, "DeviceID", m.device_id)


def _w_catalog_query(root: ET.Element, m: Any, tz: tzinfo, _v: GbVersion) -> None:
    _put(root, "DeviceID", m.device_id)
    _write(root, m, (_F("StartTime", "start_time", _TIME), _F("EndTime", "end_time", _TIME)), tz)


def _w_catalog_list(root: ET.Element, m: Any, tz: tzinfo, version: GbVersion) -> None:
    _put(root, "DeviceID", m.device_id)
    _put(root, "SumNum", str(m.sum_num))
    if m.items or m.sum_num:
        holder = ET.SubElement(root, "DeviceList", Num=str(len(m.items)))
        for item in m.items:
            _write_catalog_item(holder, item, tz, version)


def _w_device_info(root: ET.Element, m: Any, tz: tzinfo, _v: GbVersion) -> None:
    _put(root, "DeviceID", m.device_id)
    _write(root, m, _DEVICE_INFO_SPEC, tz)
    _write_extra(root, m.extra)


def _w_device_status(root: ET.Element, m: Any, tz: tzinfo, _v: GbVersion) -> None:
    _put(root, "DeviceID", m.device_id)
    _write(root, m, _DEVICE_STATUS_SPEC[:1], tz)
    if m.online is not None:
        _put(root, "Online", "ONLINE" if m.online else "OFFLINE")
    _write(root, m, _DEVICE_STATUS_SPEC[1:], tz)
    if m.alarm_status:
        holder = ET.SubElement(root, "Alarmstatus", Num=str(len(m.alarm_status)))
        for alarm in m.alarm_status:
            item = ET.SubElement(holder, "Item")
            _put(item, "DeviceID", alarm.device_id)
            _put(item, "DutyStatus", alarm.duty_status.value)


def _w_record_query(root: ET.Element, m: Any, tz: tzinfo, _v: GbVersion) -> None:
    _put(root, "DeviceID", m.device_id)
    _write(root, m, _RECORD_QUERY_SPEC, tz)


def _w_record_response(root: ET.Element, m: Any, tz: tzinfo, _v: GbVersion) -> None:
    _put(root, "DeviceID", m.device_id)
    _put(root, "Name", m.name)
    _put(root, "SumNum", str(m.sum_num))
    if m.items or m.sum_num:
        holder = ET.SubElement(root, "RecordList", Num=str(len(m.items)))
        for record in m.items:
            item = ET.SubElement(holder, "Item")
            _write(item, record, _RECORD_ITEM_SPEC, tz)
            _write_extra(item, record.extra)


def _w_device_control(root: ET.Element, m: Any, tz: tzinfo, _v: GbVersion) -> None:
    _put(root, "DeviceID", m.device_id)
    command = m.command
    info_fields: list[tuple[str, str | None]] = []
    if m.control_priority is not None:
        info_fields.append(("ControlPriority", str(m.control_priority)))
    if isinstance(command, PtzControl):
        _put(root, "PTZCmd", command.cmd.to_hex())
        if command.preset_name is not None or command.cruise_track_name is not None:
            params = ET.SubElement(root, "PTZCmdParams")
            _put(params, "PresetName", command.preset_name)
            _put(params, "CruiseTrackName", command.cruise_track_name)
    elif isinstance(command, TeleBoot):
        _put(root, "TeleBoot", "Boot")
    elif isinstance(command, RecordControl):
        _put(root, "RecordCmd", "Record" if command.record else "StopRecord")
    elif isinstance(command, GuardControl):
        _put(root, "GuardCmd", "SetGuard" if command.guard else "ResetGuard")
    elif isinstance(command, AlarmReset):
        _put(root, "AlarmCmd", "ResetAlarm")
        info_fields += [("AlarmMethod", command.alarm_method), ("AlarmType", command.alarm_type)]
    else:
        if command.tag not in ("IFrameCmd", "IFameCmd"):
            raise ManscdpError(f"IFrameControl tag must be IFrameCmd or IFameCmd, got {command.tag!r}")
        _put(root, command.tag, "Send")
    if any(value is not None for _tag, value in info_fields):
        info = ET.SubElement(root, "Info")
        for tag, value in info_fields:
            _put(info, tag, value)


def _w_alarm(root: ET.Element, m: Any, tz: tzinfo, _v: GbVersion) -> None:
    _put(root, "DeviceID", m.device_id)
    _write(root, m, _ALARM_SPEC, tz)
    if m.alarm_type is not None or m.event_type is not None:
        info = ET.SubElement(root, "Info")
        _put(info, "AlarmType", None if m.alarm_type is None else str(m.alarm_type))
        if m.event_type is not None:
            _put(ET.SubElement(info, "AlarmTypeParam"), "EventType", str(m.event_type))


def _w_result(root: ET.Element, m: Any, tz: tzinfo, _v: GbVersion) -> None:
    _put(root, "DeviceID", m.device_id)
    _put(root, "Result", m.result.value)


def _w_alarm_query(root: ET.Element, m: Any, tz: tzinfo, _v: GbVersion) -> None:
    _put(root, "DeviceID", m.device_id)
    _write(root, m, _ALARM_QUERY_SPEC, tz)


def _w_position_query(root: ET.Element, m: Any, tz: tzinfo, _v: GbVersion) -> None:
    _put(root, "DeviceID", m.device_id)
    _put(root, "Interval", None if m.interval is None else str(m.interval))


def _w_position_notify(root: ET.Element, m: Any, tz: tzinfo, _v: GbVersion) -> None:
    _put(root, "DeviceID", m.device_id)
    if m.style is PositionStyle.FLAT:
        if len(m.positions) != 1 or m.positions[0].device_id != m.device_id:
            raise ManscdpError("a flat (2016) MobilePosition notify carries exactly one position of its DeviceID")
        _write(root, m.positions[0], _POSITION_FLAT_SPEC, tz)
        return
    _write(root, m, (_F("Time", "time", _TIME),), tz)
    _put(root, "SumNum", str(len(m.positions)))
    holder = ET.SubElement(root, "DeviceList", Num=str(len(m.positions)))
    for position in m.positions:
        _write(ET.SubElement(holder, "Item"), position, _POSITION_ITEM_SPEC, tz)


def _w_media_status(root: ET.Element, m: Any, tz: tzinfo, _v: GbVersion) -> None:
    _put(root, "DeviceID", m.device_id)
    _put(root, "NotifyType", m.notify_type)


def _w_broadcast(root: ET.Element, m: Any, tz: tzinfo, _v: GbVersion) -> None:
    _put(root, "SourceID", m.source_id)
    _put(root, "TargetID", m.target_id)


_BODY_WRITERS: dict[type, Callable[[ET.Element, Any, tzinfo, GbVersion], None]] = {
    Keepalive: _w_keepalive,
    CatalogQuery: _w_catalog_query,
    CatalogResponse: _w_catalog_list,
    CatalogNotify: _w_catalog_list,
    DeviceInfoQuery: _w_device,
    DeviceInfoResponse: _w_device_info,
    DeviceStatusQuery: _w_device,
    DeviceStatusResponse: _w_device_status,
    RecordInfoQuery: _w_record_query,
    RecordInfoResponse: _w_record_response,
    DeviceControl: _w_device_control,
    AlarmNotify: _w_alarm,
    ResultResponse: _w_result,
    AlarmQuery: _w_alarm_query,
    MobilePositionQuery: _w_position_query,
    MobilePositionNotify: _w_position_notify,
    MediaStatusNotify: _w_media_status,
    BroadcastNotify: _w_broadcast,
}


__all__ = [
    "MAX_BODY_BYTES",
    "MAX_LIST_ITEMS",
    "RESULT_CMD_TYPES",
    "AlarmNotify",
    "AlarmQuery",
    "AlarmReset",
    "AlarmStatus",
    "BroadcastNotify",
    "CatalogEvent",
    "CatalogInfo",
    "CatalogItem",
    "CatalogNotify",
    "CatalogQuery",
    "CatalogResponse",
    "Charset",
    "ControlCommand",
    "Decoded",
    "DeviceControl",
    "DeviceInfoQuery",
    "DeviceInfoResponse",
    "DeviceStatusQuery",
    "DeviceStatusResponse",
    "DutyStatus",
    "ForbiddenXmlError",
    "GbVersion",
    "GuardControl",
    "IFrameControl",
    "ItemStatus",
    "Keepalive",
    "ManscdpError",
    "MediaStatusNotify",
    "Message",
    "MobilePosition",
    "MobilePositionNotify",
    "MobilePositionQuery",
    "PositionStyle",
    "PtzControl",
    "RecordControl",
    "RecordInfoQuery",
    "RecordInfoResponse",
    "RecordItem",
    "Result",
    "ResultResponse",
    "Root",
    "TeleBoot",
    "UnknownMessage",
    "decode_manscdp",
    "encode_manscdp",
    "format_gb_time",
    "parse_gb_time",
    "parse_manscdp",
]
