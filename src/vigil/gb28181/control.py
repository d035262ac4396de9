"""Device control: PTZ and ResetAlarm as MANSCDP ``DeviceControl`` MESSAGEs to the device that serves a channel.

Theory of operation: :class:`GbControl` finds the registered device that owns the target (for
a channel through :class:`~vigil.gb28181.media.ChannelOwners`, the same lookup live video uses),
encodes ``<Control><CmdType>DeviceControl</CmdType>`` in that device's charset and sends it as a SIP
MESSAGE (STD22 A.2.3.1, 9.3). The device's SIP answer is the result: PTZ has no MANSCDP Response
(9.3.1 table 1), so a 2xx means "taken"; ResetAlarm's Response (``Result`` OK/ERROR) arrives later
as a MESSAGE of its own and is only logged by whoever hears it.

:func:`ptz_instruction` turns a console action (``up-left`` at speed 128, ``preset-call`` 5, …)
into a :mod:`vigil.protocols.gb28181.ptz` instruction; it is pure and validates the numbers.
The MESSAGE itself is :func:`vigil.gb28181.outgoing.manscdp_message`, as for every GB part of Vigil.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from vigil.gb28181.outgoing import RequestSender, manscdp_message
from vigil.gb28181.registrar import RegisteredDevice
from vigil.protocols.gb28181.manscdp import (
    MAX_SN,
    AlarmReset,
    ControlCommand,
    DeviceControl,
    PtzControl,
)
from vigil.protocols.gb28181.ptz import (
    MAX_12_BIT,
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
    PtzInstruction,
    PtzMove,
    Scan,
    ScanAction,
    ScanSpeed,
    Tilt,
    Zoom,
)
from vigil.protocols.sip.message import IdGenerator, SipError
from vigil.settings import Gb28181Settings
from vigil.transport.sip import SipPeer

__all__ = [
    "CONTROL_PRIORITY",
    "PRESET_ACTIONS",
    "VALUE_ACTIONS",
    "ControlAnswer",
    "ControlError",
    "DeviceNoAnswer",
    "DeviceOffline",
    "GbControl",
    "PtzAction",
    "ptz_instruction",
]

log = logging.getLogger(__name__)

#: ``Info/ControlPriority`` sent with PTZ (WVP sends 5; devices arbitrate between platforms with it).
CONTROL_PRIORITY = 5
#: Zoom speed is a nibble (0-15); the console's one speed (1-255) is scaled into it.
_ZOOM_MAX = 0xF


class ControlError(Exception):
    """A control command could not be delivered; the message says why, for the operator."""


class DeviceOffline(ControlError):
    """No registered device serves the target."""


class DeviceNoAnswer(ControlError):
    """The device did not answer the MESSAGE (timeout, connection gone)."""


class PtzAction(enum.StrEnum):
    """What the console's PTZ pad asks for (press = move, release = ``stop``)."""

    UP = "up"
    DOWN = "down"
    LEFT = "left"
    RIGHT = "right"
    UP_LEFT = "up-left"
    UP_RIGHT = "up-right"
    DOWN_LEFT = "down-left"
    DOWN_RIGHT = "down-right"
    ZOOM_IN = "zoom-in"
    ZOOM_OUT = "zoom-out"
    FOCUS_NEAR = "focus-near"
    FOCUS_FAR = "focus-far"
    IRIS_OPEN = "iris-open"
    IRIS_CLOSE = "iris-close"
    #: Stops pan, tilt and zoom (and a running cruise or scan).
    STOP = "stop"
    #: Stops focus and iris (the FI stop, 0x40; A.3.3).
    FI_STOP = "fi-stop"
    PRESET_SET = "preset-set"
    PRESET_CALL = "preset-call"
    PRESET_DELETE = "preset-delete"
    CRUISE_START = "cruise-start"
    CRUISE_STOP = "cruise-stop"
    #: Add preset ``preset`` to cruise ``group`` (0x84).
    CRUISE_ADD_POINT = "cruise-add-point"
    #: Remove preset ``preset`` from cruise ``group``; without a preset, the whole cruise (0x85).
    CRUISE_DELETE_POINT = "cruise-delete-point"
    #: Cruise ``group``'s speed = ``value`` (0x86).
    CRUISE_SPEED = "cruise-speed"
    #: Seconds cruise ``group`` dwells at each point = ``value`` (0x87).
    CRUISE_DWELL = "cruise-dwell"
    SCAN_START = "scan-start"
    SCAN_STOP = "scan-stop"
    #: The camera's present position is scan ``group``'s left / right limit (0x89 data 2 = 1 / 2).
    SCAN_SET_LEFT = "scan-set-left"
    SCAN_SET_RIGHT = "scan-set-right"
    #: Scan ``group``'s speed = ``value`` (0x8A).
    SCAN_SPEED = "scan-speed"


#: Actions that need a preset number.
PRESET_ACTIONS = frozenset(
    {PtzAction.PRESET_SET, PtzAction.PRESET_CALL, PtzAction.PRESET_DELETE, PtzAction.CRUISE_ADD_POINT}
)
#: Actions that need a ``value`` (0-4095: a speed, or a dwell time in seconds).
VALUE_ACTIONS = frozenset({PtzAction.CRUISE_SPEED, PtzAction.CRUISE_DWELL, PtzAction.SCAN_SPEED})

_MOVES: dict[PtzAction, tuple[Pan | None, Tilt | None]] = {
    PtzAction.UP: (None, Tilt.UP),
    PtzAction.DOWN: (None, Tilt.DOWN),
    PtzAction.LEFT: (Pan.LEFT, None),
    PtzAction.RIGHT: (Pan.RIGHT, None),
    PtzAction.UP_LEFT: (Pan.LEFT, Tilt.UP),
    PtzAction.UP_RIGHT: (Pan.RIGHT, Tilt.UP),
    PtzAction.DOWN_LEFT: (Pan.LEFT, Tilt.DOWN),
    PtzAction.DOWN_RIGHT: (Pan.RIGHT, Tilt.DOWN),
}
_SCANS = {
    PtzAction.SCAN_START: ScanAction.START,
    PtzAction.SCAN_SET_LEFT: ScanAction.SET_LEFT,
    PtzAction.SCAN_SET_RIGHT: ScanAction.SET_RIGHT,
}
_PRESETS = {
    PtzAction.PRESET_SET: PresetAction.SET,
    PtzAction.PRESET_CALL: PresetAction.CALL,
    PtzAction.PRESET_DELETE: PresetAction.DELETE,
}


def ptz_instruction(
    action: PtzAction, *, speed: int, preset: int | None = None, group: int = 1, value: int | None = None
) -> PtzInstruction:
    """The A.3 instruction for one console action; raise ValueError naming the bad field.

    ``speed`` 1-255 drives pan and tilt as given and zoom scaled to 1-15; ``preset`` 1-255 is needed
    by the preset actions and by adding a cruise point (deleting one without a preset deletes the
    whole cruise); ``group`` 0-255 picks the cruise or scan group; ``value`` 0-4095 is the cruise
    speed, cruise dwell (seconds) or scan speed the ``*-speed``/``*-dwell`` actions set. Stopping a
    cruise or a scan is the PTZ stop (A.3.5, A.3.6).
    """
    if not 1 <= speed <= 0xFF:
        raise ValueError(f"speed must be 1..255, got {speed}")
    if not 0 <= group <= 0xFF:
        raise ValueError(f"group must be 0..255, got {group}")
    if preset is not None and not 1 <= preset <= 0xFF:
        raise ValueError(f"preset must be 1..255, got {preset}")
    if action in PRESET_ACTIONS and preset is None:
        raise ValueError(f"preset is required for {action.value}")
    if action in VALUE_ACTIONS:
        if value is None:
            raise ValueError(f"value is required for {action.value}")
        if not 0 <= value <= MAX_12_BIT:
            raise ValueError(f"value must be 0..{MAX_12_BIT}, got {value}")
    if action in _MOVES:
        pan, tilt = _MOVES[action]
        return PtzMove(pan=pan, tilt=tilt, pan_speed=speed if pan else 0, tilt_speed=speed if tilt else 0, zoom_speed=0)
    if action in (PtzAction.ZOOM_IN, PtzAction.ZOOM_OUT):
        zoom_speed = max(1, speed * _ZOOM_MAX // 0xFF)
        return PtzMove(zoom=Zoom.IN if action is PtzAction.ZOOM_IN else Zoom.OUT, zoom_speed=zoom_speed)
    if action in (PtzAction.FOCUS_NEAR, PtzAction.FOCUS_FAR):
        return FocusIris(focus=Focus.NEAR if action is PtzAction.FOCUS_NEAR else Focus.FAR, focus_speed=speed)
    if action is PtzAction.FI_STOP:
        return FocusIris()
    if action in (PtzAction.IRIS_OPEN, PtzAction.IRIS_CLOSE):
        return FocusIris(iris=Iris.OPEN if action is PtzAction.IRIS_OPEN else Iris.CLOSE, iris_speed=speed)
    if action in _PRESETS:
        assert preset is not None
        return Preset(_PRESETS[action], preset)
    if action is PtzAction.CRUISE_ADD_POINT:
        assert preset is not None
        return CruiseAddPoint(group, preset)
    if action is PtzAction.CRUISE_DELETE_POINT:
        return CruiseDeletePoint(group, preset or 0)
    if action in VALUE_ACTIONS:
        assert value is not None
        if action is PtzAction.CRUISE_SPEED:
            return CruiseSpeed(group, value)
        if action is PtzAction.CRUISE_DWELL:
            return CruiseDwell(group, value)
        return ScanSpeed(group, value)
    if action is PtzAction.CRUISE_START:
        return CruiseStart(group)
    if action in _SCANS:
        return Scan(_SCANS[action], group)
    return STOP  # stop, cruise-stop, scan-stop


@dataclass(frozen=True, slots=True)
class ControlAnswer:
    """How the device answered one DeviceControl MESSAGE."""

    device_id: str
    target_id: str
    sn: int
    status: int
    reason: str

    @property
    def accepted(self) -> bool:
        """True for a 2xx (the device took the command)."""
        return 200 <= self.status < 300


class DeviceDirectory(Protocol):
    """Who is registered, and where."""

    def registered(self, device_id: str) -> RegisteredDevice | None: ...


class ChannelOwners(Protocol):
    """Which registered device serves a channel."""

    def owner_of(self, channel_id: str) -> tuple[str, SipPeer] | None: ...


class GbControl:
    """Sends DeviceControl commands (PTZ, ResetAlarm) and reports the device's SIP answer."""

    def __init__(
        self,
        settings: Gb28181Settings,
        sender: RequestSender,
        directory: DeviceDirectory,
        owners: ChannelOwners,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._settings = settings
        self._sender = sender
        self._directory = directory
        self._owners = owners
        self._ids = IdGenerator(random_bytes)
        self._sn = int.from_bytes(random_bytes(2), "big")

    async def ptz(self, channel_id: str, instruction: PtzInstruction) -> ControlAnswer:
        """Send one PTZCmd to the device serving ``channel_id``; raise :class:`ControlError`."""
        owner = self._owners.owner_of(channel_id)
        device = self._directory.registered(owner[0]) if owner is not None else None
        if device is None:
            raise DeviceOffline(f"no registered device serves channel {channel_id}")
        return await self._send(device, channel_id, PtzControl(cmd=PtzCmd(instruction)), CONTROL_PRIORITY)

    async def relay(self, channel_id: str, command: ControlCommand, priority: int | None = None) -> ControlAnswer:
        """Forward a command an upper platform sent for ``channel_id`` to the device serving it (cascade).

        PTZ goes with the upper's ``ControlPriority`` (ours when it sent none); raise :class:`ControlError`.
        """
        owner = self._owners.owner_of(channel_id)
        device = self._directory.registered(owner[0]) if owner is not None else None
        if device is None:
            raise DeviceOffline(f"no registered device serves channel {channel_id}")
        if isinstance(command, PtzControl) and priority is None:
            priority = CONTROL_PRIORITY
        return await self._send(device, channel_id, command, priority)

    async def reset_alarm(
        self, device_id: str, target_id: str, *, alarm_method: int | None = None, alarm_type: int | None = None
    ) -> ControlAnswer:
        """Send ``AlarmCmd ResetAlarm`` for ``target_id`` (a channel or the device) to ``device_id``."""
        device = self._directory.registered(device_id)
        if device is None:
            raise DeviceOffline(f"device {device_id} is not registered")
        command = AlarmReset(
            alarm_method=None if alarm_method is None else str(alarm_method),
            alarm_type=None if alarm_type is None else str(alarm_type),
        )
        return await self._send(device, target_id, command, None)

    async def _send(
        self, device: RegisteredDevice, target_id: str, command: ControlCommand, priority: int | None
    ) -> ControlAnswer:
        self._sn = self._sn % MAX_SN + 1
        message = DeviceControl(sn=self._sn, device_id=target_id, command=command, control_priority=priority)
        try:
            request = manscdp_message(self._settings, self._sender, self._ids, device, message, target_id=target_id)
        except SipError as exc:
            raise ControlError(f"cannot address device {device.device_id}: {exc}") from exc
        try:
            async with asyncio.timeout(self._settings.control_timeout_s):
                response = await self._sender.send_request(request, device.peer)
        except (TimeoutError, ConnectionError) as exc:
            raise DeviceNoAnswer(
                f"device {device.device_id} did not answer the DeviceControl for {target_id}: {exc or 'timeout'}"
            ) from exc
        answer = ControlAnswer(device.device_id, target_id, message.sn, response.status, response.reason)
        if not answer.accepted:
            log.info(
                "gb device %s: DeviceControl for %s refused %d %s",
                device.device_id,
                target_id,
                response.status,
                response.reason,
            )
        return answer
