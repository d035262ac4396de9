"""PTZCmd: the 8-byte front-end control code of GB/T 28181 A.3, carried as 16 hex digits in ``<PTZCmd>``.

Layout (A.3.1 table A.3)::

    byte 1  0xA5
    byte 2  high nibble version (0), low nibble check = (0xA + 0x5 + version) % 16  -> 0x0F
    byte 3  address, low 8 bits
    byte 4  instruction
    byte 5  data 1
    byte 6  data 2
    byte 7  high nibble data 3, low nibble address high 4 bits
    byte 8  checksum = (byte 1 + ... + byte 7) % 256

Decoding is strict about the header, checksum and meaningful fields, and tolerant of filler bytes that
peers fill differently (WVP sends presets with data 1 = 01 instead of 00): fillers are ignored on decode
and written as zero on encode, so ``decode(encode(cmd)) == cmd`` always holds and ``encode(decode(b)) == b``
holds for canonical bytes.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from vigil.protocols.gb28181.errors import PtzError

PTZ_CMD_LENGTH = 8
_HEADER = 0xA5
_VERSION = 0
_HEX = re.compile(r"[0-9A-Fa-f]{16}")
#: 12-bit values (cruise speed/dwell, scan speed) are data 2 (low 8 bits) plus data 3 (high 4 bits).
MAX_12_BIT = 0xFFF
MAX_ADDRESS = 0xFFF


class Pan(enum.Enum):
    LEFT = "left"
    RIGHT = "right"


class Tilt(enum.Enum):
    UP = "up"
    DOWN = "down"


class Zoom(enum.Enum):
    IN = "in"
    OUT = "out"


class Focus(enum.Enum):
    NEAR = "near"
    FAR = "far"


class Iris(enum.Enum):
    OPEN = "open"
    CLOSE = "close"


class PresetAction(enum.IntEnum):
    SET = 0x81
    CALL = 0x82
    DELETE = 0x83


def _check(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise PtzError(f"PTZ {name} must be {low}..{high}, got {value}")


@dataclass(frozen=True, slots=True)
class PtzMove:
    """Pan/tilt/zoom (A.3.2); no direction at all is the stop command. Speeds: pan/tilt 0-255, zoom 0-15."""

    pan: Pan | None = None
    tilt: Tilt | None = None
    zoom: Zoom | None = None
    pan_speed: int = 0
    tilt_speed: int = 0
    zoom_speed: int = 0

    def __post_init__(self) -> None:
        _check("pan speed", self.pan_speed, 0, 0xFF)
        _check("tilt speed", self.tilt_speed, 0, 0xFF)
        _check("zoom speed", self.zoom_speed, 0, 0xF)

    @property
    def is_stop(self) -> bool:
        """True when no motion bit is set: the standard's PTZ stop (also stops cruise and scan)."""
        return self.pan is None and self.tilt is None and self.zoom is None


#: The canonical stop command ``A50F0100000000B5``.
STOP = PtzMove()


@dataclass(frozen=True, slots=True)
class FocusIris:
    """Focus/iris (FI, A.3.3); neither set is the FI stop (0x40). Speeds 0-255."""

    focus: Focus | None = None
    iris: Iris | None = None
    focus_speed: int = 0
    iris_speed: int = 0

    def __post_init__(self) -> None:
        _check("focus speed", self.focus_speed, 0, 0xFF)
        _check("iris speed", self.iris_speed, 0, 0xFF)


@dataclass(frozen=True, slots=True)
class Preset:
    """Set, call or delete preset 1-255 (A.3.4)."""

    action: PresetAction
    number: int

    def __post_init__(self) -> None:
        _check("preset number", self.number, 1, 0xFF)


@dataclass(frozen=True, slots=True)
class CruiseAddPoint:
    """Add preset ``preset`` (1-255) to cruise group ``group`` (0x84)."""

    group: int
    preset: int

    def __post_init__(self) -> None:
        _check("cruise group", self.group, 0, 0xFF)
        _check("preset number", self.preset, 1, 0xFF)


@dataclass(frozen=True, slots=True)
class CruiseDeletePoint:
    """Delete a point from a cruise group (0x85); preset 0 deletes the whole cruise."""

    group: int
    preset: int = 0

    def __post_init__(self) -> None:
        _check("cruise group", self.group, 0, 0xFF)
        _check("preset number", self.preset, 0, 0xFF)


@dataclass(frozen=True, slots=True)
class CruiseSpeed:
    """Set the cruise speed of a group (0x86), 12-bit value."""

    group: int
    speed: int

    def __post_init__(self) -> None:
        _check("cruise group", self.group, 0, 0xFF)
        _check("cruise speed", self.speed, 0, MAX_12_BIT)


@dataclass(frozen=True, slots=True)
class CruiseDwell:
    """Set the dwell time in seconds at each cruise point (0x87), 12-bit value."""

    group: int
    seconds: int

    def __post_init__(self) -> None:
        _check("cruise group", self.group, 0, 0xFF)
        _check("cruise dwell", self.seconds, 0, MAX_12_BIT)


@dataclass(frozen=True, slots=True)
class CruiseStart:
    """Start cruise group ``group`` (0x88); stop it with :data:`STOP`."""

    group: int

    def __post_init__(self) -> None:
        _check("cruise group", self.group, 0, 0xFF)


class ScanAction(enum.IntEnum):
    """Data 2 of instruction 0x89."""

    START = 0x00
    SET_LEFT = 0x01
    SET_RIGHT = 0x02


@dataclass(frozen=True, slots=True)
class Scan:
    """Start an auto-scan or set its left/right limit (0x89); stop it with :data:`STOP`."""

    action: ScanAction
    group: int = 0

    def __post_init__(self) -> None:
        _check("scan group", self.group, 0, 0xFF)


@dataclass(frozen=True, slots=True)
class ScanSpeed:
    """Set the auto-scan speed of a group (0x8A), 12-bit value."""

    group: int
    speed: int

    def __post_init__(self) -> None:
        _check("scan group", self.group, 0, 0xFF)
        _check("scan speed", self.speed, 0, MAX_12_BIT)


@dataclass(frozen=True, slots=True)
class AuxSwitch:
    """Switch auxiliary ``number`` on (0x8C) or off (0x8D); number 1 is the wiper."""

    number: int
    on: bool

    def __post_init__(self) -> None:
        _check("aux switch number", self.number, 0, 0xFF)


PtzInstruction = (
    PtzMove
    | FocusIris
    | Preset
    | CruiseAddPoint
    | CruiseDeletePoint
    | CruiseSpeed
    | CruiseDwell
    | CruiseStart
    | Scan
    | ScanSpeed
    | AuxSwitch
)


@dataclass(frozen=True, slots=True)
class PtzCmd:
    """One PTZCmd: an instruction plus the 12-bit address (WVP sends 1; devices address by DeviceID)."""

    instruction: PtzInstruction
    address: int = 1

    def __post_init__(self) -> None:
        _check("address", self.address, 0, MAX_ADDRESS)

    def encode(self) -> bytes:
        """The 8 bytes, checksum included."""
        code, data1, data2, data3 = _fields(self.instruction)
        head = bytes(
            (
                _HEADER,
                (_VERSION << 4) | _header_check(_VERSION),
                self.address & 0xFF,
                code,
                data1,
                data2,
                (data3 << 4) | (self.address >> 8),
            )
        )
        return head + bytes((sum(head) & 0xFF,))

    def to_hex(self) -> str:
        """The 16 upper-case hex digits sent in ``<PTZCmd>``."""
        return self.encode().hex().upper()


def _header_check(version: int) -> int:
    return (0xA + 0x5 + version) % 16


def _split12(value: int) -> tuple[int, int]:
    return value & 0xFF, value >> 8


def _fields(ins: PtzInstruction) -> tuple[int, int, int, int]:
    """(instruction code, data 1, data 2, data 3 nibble) for one instruction."""
    if isinstance(ins, PtzMove):
        code = 0
        if ins.zoom is Zoom.OUT:
            code |= 0x20
        elif ins.zoom is Zoom.IN:
            code |= 0x10
        if ins.tilt is Tilt.UP:
            code |= 0x08
        elif ins.tilt is Tilt.DOWN:
            code |= 0x04
        if ins.pan is Pan.LEFT:
            code |= 0x02
        elif ins.pan is Pan.RIGHT:
            code |= 0x01
        return code, ins.pan_speed, ins.tilt_speed, ins.zoom_speed
    if isinstance(ins, FocusIris):
        code = 0x40
        if ins.iris is Iris.CLOSE:
            code |= 0x08
        elif ins.iris is Iris.OPEN:
            code |= 0x04
        if ins.focus is Focus.NEAR:
            code |= 0x02
        elif ins.focus is Focus.FAR:
            code |= 0x01
        return code, ins.focus_speed, ins.iris_speed, 0
    if isinstance(ins, Preset):
        return int(ins.action), 0, ins.number, 0
    if isinstance(ins, CruiseAddPoint):
        return 0x84, ins.group, ins.preset, 0
    if isinstance(ins, CruiseDeletePoint):
        return 0x85, ins.group, ins.preset, 0
    if isinstance(ins, CruiseSpeed):
        return (0x86, ins.group, *_split12(ins.speed))
    if isinstance(ins, CruiseDwell):
        return (0x87, ins.group, *_split12(ins.seconds))
    if isinstance(ins, CruiseStart):
        return 0x88, ins.group, 0, 0
    if isinstance(ins, Scan):
        return 0x89, ins.group, int(ins.action), 0
    if isinstance(ins, ScanSpeed):
        return (0x8A, ins.group, *_split12(ins.speed))
    return (0x8C if ins.on else 0x8D), ins.number, 0, 0


def decode_ptz_cmd(data: bytes | str) -> PtzCmd:
    """Decode 8 bytes or 16 hex digits; raise :class:`PtzError` saying what is wrong."""
    if isinstance(data, str):
        if not _HEX.fullmatch(data):
            raise PtzError(f"PTZCmd must be 16 hex digits, got {data[:40]!r}")
        raw = bytes.fromhex(data)
    else:
        raw = bytes(data)
    if len(raw) != PTZ_CMD_LENGTH:
        raise PtzError(f"PTZCmd must be {PTZ_CMD_LENGTH} bytes, got {len(raw)}")
    if raw[0] != _HEADER:
        raise PtzError(f"PTZCmd byte 1 must be 0xA5, got 0x{raw[0]:02X}")
    version = raw[1] >> 4
    if version != _VERSION:
        raise PtzError(f"PTZCmd version {version} is not supported (byte 2 high nibble must be 0)")
    if raw[1] & 0x0F != _header_check(version):
        raise PtzError(f"PTZCmd byte 2 check nibble 0x{raw[1] & 0x0F:X}, expected 0x{_header_check(version):X}")
    checksum = sum(raw[:7]) & 0xFF
    if raw[7] != checksum:
        raise PtzError(f"PTZCmd checksum 0x{raw[7]:02X}, expected 0x{checksum:02X}")
    address = raw[2] | ((raw[6] & 0x0F) << 8)
    return PtzCmd(_instruction(raw[3], raw[4], raw[5], raw[6] >> 4), address)


def _pair(code: int, first_bit: int, second_bit: int, what: str) -> int:
    """0 neither, 1 first, 2 second; both is contradictory (A.3.2: the pairs are mutually exclusive)."""
    first, second = bool(code & first_bit), bool(code & second_bit)
    if first and second:
        raise PtzError(f"PTZCmd instruction 0x{code:02X} sets both {what} bits")
    return 1 if first else 2 if second else 0


def _instruction(code: int, data1: int, data2: int, data3: int) -> PtzInstruction:
    if code & 0xC0 == 0x00:
        zoom = (None, Zoom.OUT, Zoom.IN)[_pair(code, 0x20, 0x10, "zoom in/out")]
        tilt = (None, Tilt.UP, Tilt.DOWN)[_pair(code, 0x08, 0x04, "up/down")]
        pan = (None, Pan.LEFT, Pan.RIGHT)[_pair(code, 0x02, 0x01, "left/right")]
        return PtzMove(pan, tilt, zoom, data1, data2, data3)
    if code & 0xF0 == 0x40:
        iris = (None, Iris.CLOSE, Iris.OPEN)[_pair(code, 0x08, 0x04, "iris close/open")]
        focus = (None, Focus.NEAR, Focus.FAR)[_pair(code, 0x02, 0x01, "focus near/far")]
        return FocusIris(focus, iris, data1, data2)
    twelve = data2 | (data3 << 8)
    match code:
        case 0x81 | 0x82 | 0x83:
            return Preset(PresetAction(code), data2)
        case 0x84:
            return CruiseAddPoint(data1, data2)
        case 0x85:
            return CruiseDeletePoint(data1, data2)
        case 0x86:
            return CruiseSpeed(data1, twelve)
        case 0x87:
            return CruiseDwell(data1, twelve)
        case 0x88:
            return CruiseStart(data1)
        case 0x89:
            if data2 not in (0, 1, 2):
                raise PtzError(f"PTZCmd scan (0x89) data 2 must be 00/01/02, got 0x{data2:02X}")
            return Scan(ScanAction(data2), data1)
        case 0x8A:
            return ScanSpeed(data1, twelve)
        case 0x8C | 0x8D:
            return AuxSwitch(data1, code == 0x8C)
    raise PtzError(f"PTZCmd instruction 0x{code:02X} is not assigned by GB/T 28181 A.3")


def encode_ptz_cmd(cmd: PtzCmd) -> str:
    """The 16 upper-case hex digits for ``<PTZCmd>``."""
    return cmd.to_hex()
