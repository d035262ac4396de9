"""GbControl against a fake SIP sender: console actions → PTZCmd, the MESSAGE it sends, and every answer."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

import pytest

from vigil.gb28181.control import (
    CONTROL_PRIORITY,
    ControlError,
    DeviceNoAnswer,
    DeviceOffline,
    GbControl,
    PtzAction,
    ptz_instruction,
)
from vigil.gb28181.liveness import DeviceLiveness
from vigil.gb28181.registrar import BEIJING, RegisteredDevice
from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.gb28181.manscdp import AlarmReset, IFrameControl, PtzControl, decode_manscdp
from vigil.protocols.gb28181.manscdp import DeviceControl as ControlMessage
from vigil.protocols.gb28181.ptz import (
    STOP,
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
    PtzMove,
    Scan,
    ScanAction,
    ScanSpeed,
    Tilt,
    Zoom,
)
from vigil.protocols.sip.message import SipRequest, SipResponse, make_response
from vigil.settings import Gb28181Settings
from vigil.transport.sip import PeerUnreachable, SipPeer, SipRequestTimeout

DEVICE = "34020000001180000001"
CHANNEL = "34020000001310000001"
PEER = SipPeer("udp", "192.0.2.7", 5070)
T0 = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)


class Sender:
    """Records requests; answers each with ``status``, raises ``error``, or never answers (``hang``)."""

    udp_port = 5060
    tcp_port = 5061

    def __init__(self, status: int = 200, error: Exception | None = None, *, hang: bool = False) -> None:
        self.status = status
        self.error = error
        self.hang = hang
        self.sent: list[tuple[SipRequest, SipPeer]] = []

    async def send_request(self, request: SipRequest, peer: SipPeer) -> SipResponse:
        self.sent.append((request, peer))
        if self.error is not None:
            raise self.error
        if self.hang:
            await asyncio.Event().wait()
        return make_response(request, self.status, to_tag="d")

    def local_host(self, peer: SipPeer) -> str:
        return "192.0.2.1"


class Directory:
    def __init__(self, charset: Charset = Charset.GB2312) -> None:
        liveness = DeviceLiveness(registered_at=T0, expires_at=T0, last_keepalive=None, keepalive_interval_s=None)
        self.devices = {DEVICE: RegisteredDevice(DEVICE, PEER, charset, liveness)}

    def registered(self, device_id: str) -> RegisteredDevice | None:
        return self.devices.get(device_id)


class Owners:
    def __init__(self, owned: dict[str, str]) -> None:
        self.owned = owned

    def owner_of(self, channel_id: str) -> tuple[str, SipPeer] | None:
        device = self.owned.get(channel_id)
        return (device, PEER) if device is not None else None


def control(sender: Sender, *, owned: dict[str, str] | None = None, **settings: float) -> GbControl:
    return GbControl(
        Gb28181Settings(enabled=True, **settings),
        sender,
        Directory(Charset.GB18030),
        Owners({CHANNEL: DEVICE} if owned is None else owned),
        random_bytes=os.urandom,
    )


@pytest.mark.parametrize(
    ("action", "speed", "preset", "instruction", "hex_cmd"),
    [
        (PtzAction.RIGHT, 0x80, None, PtzMove(pan=Pan.RIGHT, pan_speed=0x80), "A50F010180000036"),
        (PtzAction.LEFT, 0x80, None, PtzMove(pan=Pan.LEFT, pan_speed=0x80), "A50F010280000037"),
        (PtzAction.UP, 0x80, None, PtzMove(tilt=Tilt.UP, tilt_speed=0x80), "A50F01080080003D"),
        (
            PtzAction.DOWN_RIGHT,
            0x40,
            None,
            PtzMove(pan=Pan.RIGHT, tilt=Tilt.DOWN, pan_speed=0x40, tilt_speed=0x40),
            None,
        ),
        (PtzAction.ZOOM_IN, 17, None, PtzMove(zoom=Zoom.IN, zoom_speed=1), "A50F0110000010D5"),
        (PtzAction.ZOOM_OUT, 255, None, PtzMove(zoom=Zoom.OUT, zoom_speed=15), None),
        (PtzAction.FOCUS_FAR, 0x80, None, FocusIris(focus=Focus.FAR, focus_speed=0x80), "A50F014180000076"),
        (PtzAction.FOCUS_NEAR, 9, None, FocusIris(focus=Focus.NEAR, focus_speed=9), None),
        (PtzAction.IRIS_OPEN, 9, None, FocusIris(iris=Iris.OPEN, iris_speed=9), None),
        (PtzAction.IRIS_CLOSE, 9, None, FocusIris(iris=Iris.CLOSE, iris_speed=9), None),
        (PtzAction.STOP, 128, None, STOP, "A50F0100000000B5"),
        (PtzAction.FI_STOP, 128, None, FocusIris(), "A50F0140000000F5"),
        (PtzAction.PRESET_CALL, 128, 5, Preset(PresetAction.CALL, 5), "A50F01820005003C"),
        (PtzAction.PRESET_SET, 128, 255, Preset(PresetAction.SET, 255), None),
        (PtzAction.PRESET_DELETE, 128, 1, Preset(PresetAction.DELETE, 1), None),
        (PtzAction.CRUISE_START, 128, None, CruiseStart(1), None),
        (PtzAction.CRUISE_STOP, 128, None, STOP, None),
        (PtzAction.SCAN_START, 128, None, Scan(ScanAction.START, 1), None),
        (PtzAction.SCAN_STOP, 128, None, STOP, None),
    ],
)
def test_console_actions_map_to_the_standard_instruction(
    action: PtzAction, speed: int, preset: int | None, instruction: object, hex_cmd: str | None
) -> None:
    got = ptz_instruction(action, speed=speed, preset=preset)
    assert got == instruction
    if hex_cmd is not None:  # the worked values of docs/gb28181.md §2.7
        assert PtzCmd(got).to_hex() == hex_cmd


def test_every_action_is_mapped() -> None:
    for action in PtzAction:
        ptz_instruction(action, speed=1, preset=1, group=0, value=0)


# Hex worked by hand from A.3.5/A.3.6: A5 0F 01, instruction, group, data, high nibble of a 12-bit value, and the
# byte sum of the seven before it mod 256.
@pytest.mark.parametrize(
    ("action", "preset", "group", "value", "instruction", "hex_cmd"),
    [
        (PtzAction.CRUISE_ADD_POINT, 5, 1, None, CruiseAddPoint(1, 5), "A50F01840105003F"),
        (PtzAction.CRUISE_DELETE_POINT, None, 2, None, CruiseDeletePoint(2, 0), "A50F01850200003C"),
        (PtzAction.CRUISE_DELETE_POINT, 7, 2, None, CruiseDeletePoint(2, 7), None),
        (PtzAction.CRUISE_SPEED, None, 1, 0x123, CruiseSpeed(1, 0x123), "A50F01860123106F"),
        (PtzAction.CRUISE_DWELL, None, 1, 30, CruiseDwell(1, 30), "A50F0187011E005B"),
        (PtzAction.SCAN_SET_LEFT, None, 1, None, Scan(ScanAction.SET_LEFT, 1), "A50F018901010040"),
        (PtzAction.SCAN_SET_RIGHT, None, 1, None, Scan(ScanAction.SET_RIGHT, 1), "A50F018901020041"),
        (PtzAction.SCAN_SPEED, None, 1, 4095, ScanSpeed(1, 4095), "A50F018A01FFF02F"),
    ],
)
def test_cruise_and_scan_setup_map_to_their_instructions(
    action: PtzAction, preset: int | None, group: int, value: int | None, instruction: object, hex_cmd: str | None
) -> None:
    got = ptz_instruction(action, speed=128, preset=preset, group=group, value=value)
    assert got == instruction
    if hex_cmd is not None:
        assert PtzCmd(got).to_hex() == hex_cmd


@pytest.mark.parametrize(
    ("action", "speed", "preset", "group", "message"),
    [
        (PtzAction.UP, 0, None, 1, "speed must be 1..255, got 0"),
        (PtzAction.UP, 256, None, 1, "speed must be 1..255, got 256"),
        (PtzAction.PRESET_CALL, 128, None, 1, "preset is required for preset-call"),
        (PtzAction.PRESET_SET, 128, 0, 1, "preset must be 1..255, got 0"),
        (PtzAction.CRUISE_START, 128, None, 300, "group must be 0..255, got 300"),
        (PtzAction.CRUISE_ADD_POINT, 128, None, 1, "preset is required for cruise-add-point"),
        (PtzAction.CRUISE_SPEED, 128, None, 1, "value is required for cruise-speed"),
    ],
)
def test_bad_numbers_name_the_field(
    action: PtzAction, speed: int, preset: int | None, group: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        ptz_instruction(action, speed=speed, preset=preset, group=group)


def test_values_out_of_twelve_bits_are_refused() -> None:
    with pytest.raises(ValueError, match=r"value must be 0\.\.4095, got 4096"):
        ptz_instruction(PtzAction.SCAN_SPEED, speed=1, value=4096)


async def test_ptz_is_a_device_control_message_to_the_channel_in_the_device_charset() -> None:
    sender = Sender()
    answer = await control(sender).ptz(CHANNEL, PtzMove(pan=Pan.RIGHT, pan_speed=0x80))
    assert answer.accepted and (answer.device_id, answer.target_id, answer.status) == (DEVICE, CHANNEL, 200)
    ((request, peer),) = sender.sent
    assert peer == PEER and request.method == "MESSAGE"
    assert request.uri == f"sip:{CHANNEL}@192.0.2.7:5070"
    assert request.to_address.user == CHANNEL and request.from_address.user == "34020000002000000001"
    assert request.headers["Content-Type"] == "Application/MANSCDP+xml"
    assert request.body.startswith(b'<?xml version="1.0" encoding="GB18030"?>')
    decoded = decode_manscdp(request.body, tz=BEIJING).message
    assert decoded == ControlMessage(
        sn=answer.sn,
        device_id=CHANNEL,
        command=PtzControl(cmd=PtzCmd(PtzMove(pan=Pan.RIGHT, pan_speed=0x80))),
        control_priority=CONTROL_PRIORITY,
    )
    assert b"<PTZCmd>A50F010180000036</PTZCmd>" in request.body


async def test_each_command_gets_the_next_sn() -> None:
    sender = Sender()
    device_control = control(sender)
    first = await device_control.ptz(CHANNEL, STOP)
    second = await device_control.ptz(CHANNEL, STOP)
    assert second.sn == first.sn + 1


async def test_refusal_is_reported_not_raised() -> None:
    answer = await control(Sender(status=486)).ptz(CHANNEL, STOP)
    assert not answer.accepted and answer.status == 486 and answer.reason == "Busy Here"


async def test_channel_without_a_registered_owner_is_offline() -> None:
    sender = Sender()
    with pytest.raises(DeviceOffline, match=f"no registered device serves channel {CHANNEL}"):
        await control(sender, owned={}).ptz(CHANNEL, STOP)
    with pytest.raises(DeviceOffline):  # listed by a device that is no longer registered
        await control(sender, owned={CHANNEL: "34020000001180000002"}).ptz(CHANNEL, STOP)
    assert sender.sent == []


@pytest.mark.parametrize("error", [SipRequestTimeout("no final response"), PeerUnreachable("no TCP connection")])
async def test_transport_failures_are_no_answer(error: Exception) -> None:
    with pytest.raises(DeviceNoAnswer, match=f"device {DEVICE} did not answer"):
        await control(Sender(error=error)).ptz(CHANNEL, STOP)


async def test_a_device_that_never_answers_times_out_after_the_setting() -> None:
    with pytest.raises(DeviceNoAnswer):
        await control(Sender(hang=True), control_timeout_s=0.05).ptz(CHANNEL, STOP)


async def test_reset_alarm_carries_method_and_type() -> None:
    sender = Sender()
    answer = await control(sender).reset_alarm(DEVICE, CHANNEL, alarm_method=5, alarm_type=6)
    assert answer.accepted
    ((request, _peer),) = sender.sent
    decoded = decode_manscdp(request.body, tz=BEIJING).message
    assert isinstance(decoded, ControlMessage) and decoded.device_id == CHANNEL
    assert decoded.command == AlarmReset(alarm_method="5", alarm_type="6")
    assert b"<AlarmCmd>ResetAlarm</AlarmCmd>" in request.body


async def test_reset_alarm_for_an_unregistered_device() -> None:
    with pytest.raises(ControlError, match="is not registered"):
        await control(Sender()).reset_alarm("34020000001180000009", CHANNEL)


async def test_relay_forwards_the_upper_command_with_its_priority_or_ours() -> None:
    sender = Sender()
    device_control = control(sender)
    move = PtzControl(cmd=PtzCmd(PtzMove(zoom=Zoom.IN, zoom_speed=3)))
    answer = await device_control.relay(CHANNEL, move, 2)
    assert answer.accepted and answer.device_id == DEVICE
    await device_control.relay(CHANNEL, move)
    await device_control.relay(CHANNEL, IFrameControl())
    sent = [decode_manscdp(request.body, tz=BEIJING).message for request, _peer in sender.sent]
    assert [(m.command, m.control_priority) for m in sent if isinstance(m, ControlMessage)] == [
        (move, 2),
        (move, CONTROL_PRIORITY),
        (IFrameControl(), None),
    ]
    assert all(request.to_address.user == CHANNEL for request, _peer in sender.sent)


async def test_relay_to_a_channel_nobody_serves_is_offline() -> None:
    with pytest.raises(DeviceOffline):
        await control(Sender(), owned={}).relay(CHANNEL, PtzControl(cmd=PtzCmd(STOP)))
