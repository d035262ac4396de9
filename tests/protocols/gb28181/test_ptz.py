"""PTZCmd (GB/T 28181 A.3): digest byte vectors, round trips for every instruction, strict decoding, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from vigil.protocols.gb28181.errors import PtzError
from vigil.protocols.gb28181.ptz import (
    STOP,
    AuxSwitch,
    CruiseAddPoint,
    CruiseDeletePoint,
    CruiseDwell,
    CruiseSpeed,
    CruiseStart,
    Focus,
    FocusIris,
    Iris,
    Pan,
    Preset,
    PresetAction,
    PtzCmd,
    PtzInstruction,
    PtzMove,
    Scan,
    ScanAction,
    ScanSpeed,
    Tilt,
    Zoom,
    decode_ptz_cmd,
    encode_ptz_cmd,
)

# Worked values from the digest §2.7 (match WVP SIPCommander.frontEndCmdString).
DIGEST_VECTORS: list[tuple[str, PtzInstruction]] = [
    ("A50F0100000000B5", STOP),
    ("A50F010180000036", PtzMove(pan=Pan.RIGHT, pan_speed=0x80)),
    ("A50F010280000037", PtzMove(pan=Pan.LEFT, pan_speed=0x80)),
    ("A50F01080080003D", PtzMove(tilt=Tilt.UP, tilt_speed=0x80)),
    ("A50F0110000010D5", PtzMove(zoom=Zoom.IN, zoom_speed=1)),
    ("A50F01820005003C", Preset(PresetAction.CALL, 5)),
    ("A50F014180000076", FocusIris(focus=Focus.FAR, focus_speed=0x80)),
]


@pytest.mark.parametrize(("hex_text", "instruction"), DIGEST_VECTORS)
def test_digest_vectors_decode_and_encode_byte_exact(hex_text: str, instruction: PtzInstruction) -> None:
    cmd = decode_ptz_cmd(hex_text)
    assert cmd == PtzCmd(instruction, address=1)
    assert encode_ptz_cmd(cmd) == hex_text
    assert cmd.encode() == bytes.fromhex(hex_text)


EVERY_INSTRUCTION: list[PtzInstruction] = [
    STOP,
    PtzMove(Pan.RIGHT, Tilt.UP, Zoom.OUT, 0x10, 0x20, 0x3),  # 0x29: right + up + zoom out
    PtzMove(Pan.LEFT, Tilt.DOWN, Zoom.IN, 0xFF, 0xFF, 0xF),
    FocusIris(),
    FocusIris(Focus.NEAR, Iris.OPEN, 1, 2),
    FocusIris(Focus.FAR, Iris.CLOSE, 0xFF, 0xFF),
    Preset(PresetAction.SET, 1),
    Preset(PresetAction.CALL, 255),
    Preset(PresetAction.DELETE, 17),
    CruiseAddPoint(group=1, preset=3),
    CruiseDeletePoint(group=1, preset=3),
    CruiseDeletePoint(group=2),
    CruiseSpeed(group=1, speed=0xABC),
    CruiseDwell(group=1, seconds=4095),
    CruiseStart(group=7),
    Scan(ScanAction.START, 1),
    Scan(ScanAction.SET_LEFT, 1),
    Scan(ScanAction.SET_RIGHT, 1),
    ScanSpeed(group=1, speed=300),
    AuxSwitch(number=1, on=True),
    AuxSwitch(number=1, on=False),
]


@pytest.mark.parametrize("instruction", EVERY_INSTRUCTION)
@pytest.mark.parametrize("address", [0, 1, 0x123, 0xFFF])
def test_every_instruction_round_trips(instruction: PtzInstruction, address: int) -> None:
    cmd = PtzCmd(instruction, address)
    raw = cmd.encode()
    assert len(raw) == 8 and raw[0] == 0xA5 and raw[1] == 0x0F
    assert raw[7] == sum(raw[:7]) % 256
    assert decode_ptz_cmd(raw) == cmd
    assert decode_ptz_cmd(cmd.to_hex()) == cmd
    assert decode_ptz_cmd(cmd.to_hex().lower()) == cmd


def test_specific_bytes_of_twelve_bit_and_group_fields() -> None:
    # Cruise speed 0xABC in group 1: data1 = group, data2 = low 8 bits, byte 7 high nibble = high 4 bits.
    raw = PtzCmd(CruiseSpeed(group=1, speed=0xABC), address=0x201).encode()
    assert raw[2:7] == bytes([0x01, 0x86, 0x01, 0xBC, 0xA2])
    assert PtzCmd(Scan(ScanAction.SET_RIGHT, 4)).encode()[3:6] == bytes([0x89, 0x04, 0x02])
    assert PtzCmd(AuxSwitch(1, on=False)).encode()[3:5] == bytes([0x8D, 0x01])
    assert PtzCmd(PtzMove(Pan.RIGHT, Tilt.UP, Zoom.OUT)).encode()[3] == 0x29


def test_wvp_preset_filler_is_tolerated_and_canonicalised() -> None:
    # WVP sends presets with data 1 = 01 (PtzController frontEndCommand(…, 0x81, 1, presetId, 0)).
    head = bytes([0xA5, 0x0F, 0x01, 0x81, 0x01, 0x05, 0x00])
    cmd = decode_ptz_cmd(head + bytes([sum(head) % 256]))
    assert cmd.instruction == Preset(PresetAction.SET, 5)
    assert cmd.encode()[4] == 0x00


def _signed(head_hex: str) -> str:
    """Seven bytes plus their checksum: for cases that must fail on content, not on the checksum."""
    head = bytes.fromhex(head_hex)
    return (head + bytes([sum(head) % 256])).hex().upper()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A50F0100000000B", "16 hex digits"),
        ("A50F0100000000B5 ", "16 hex digits"),
        ("G50F0100000000B5", "16 hex digits"),
        (_signed("A40F0100000000"), "byte 1"),
        (_signed("A51E0100000000"), "version"),
        (_signed("A50E0100000000"), "check nibble"),
        ("A50F0100000000B6", "checksum"),
        (_signed("A50F0103000000"), "left/right"),
        (_signed("A50F010C000000"), "up/down"),
        (_signed("A50F0130000000"), "zoom"),
        (_signed("A50F0143000000"), "focus"),
        (_signed("A50F014C000000"), "iris"),
        (_signed("A50F0150000000"), "not assigned"),
        (_signed("A50F018B000000"), "not assigned"),
        (_signed("A50F01FF000000"), "not assigned"),
        (_signed("A50F0189000300"), "scan"),
        (_signed("A50F0181000000"), "preset number"),  # preset 0
        (_signed("A50F0184010000"), "preset number"),  # cruise point preset 0
    ],
)
def test_invalid_commands_raise_ptz_error(text: str, message: str) -> None:
    with pytest.raises(PtzError, match=message):
        decode_ptz_cmd(text)


def test_wrong_byte_length_raises() -> None:
    with pytest.raises(PtzError, match="8 bytes"):
        decode_ptz_cmd(b"\xa5\x0f\x01")


def test_model_ranges_are_enforced() -> None:
    with pytest.raises(PtzError):
        PtzMove(pan=Pan.LEFT, zoom_speed=16)
    with pytest.raises(PtzError):
        CruiseDwell(1, 4096)
    with pytest.raises(PtzError):
        PtzCmd(STOP, address=0x1000)


@given(st.binary(min_size=0, max_size=12))
@example(bytes.fromhex("A50F0100000000B5"))
def test_decoder_fuzz_only_ptz_error_escapes(data: bytes) -> None:
    try:
        cmd = decode_ptz_cmd(data)
    except PtzError:
        return
    assert decode_ptz_cmd(cmd.encode()) == cmd


@given(st.binary(min_size=7, max_size=7))
def test_valid_checksums_decode_or_raise_ptz_error(head: bytes) -> None:
    head = bytes([0xA5, 0x0F]) + head[2:]
    try:
        cmd = decode_ptz_cmd(head + bytes([sum(head) % 256]))
    except PtzError:
        return
    again = cmd.encode()
    assert again[:4] == head[:4] and decode_ptz_cmd(again) == cmd


@given(st.text(max_size=20))
def test_text_fuzz_only_ptz_error_escapes(text: str) -> None:
    try:
        cmd = decode_ptz_cmd(text)
    except PtzError:
        return
    assert decode_ptz_cmd(cmd.to_hex()) == cmd


def test_trailing_newline_and_unicode_digits_are_rejected() -> None:
    with pytest.raises(PtzError):
        decode_ptz_cmd("A50F0100000000B5\n")
