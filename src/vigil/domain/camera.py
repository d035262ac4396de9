"""Camera vocabulary shared by the API, the database and the console."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class CameraCategory(StrEnum):
    """一类 public-security / 二类 industry / 三类 social (雪亮工程 classification)."""

    CLASS_1 = "1"
    CLASS_2 = "2"
    CLASS_3 = "3"


class PtzType(StrEnum):
    """GB/T 28181 catalog PTZType: 1 dome, 2 half-dome, 3 fixed bullet, 4 remote-control bullet."""

    UNKNOWN = "0"
    DOME = "1"
    HALF_DOME = "2"
    FIXED = "3"
    REMOTE_FIXED = "4"


class Definition(StrEnum):
    HD = "hd"
    SD = "sd"


class CameraState(StrEnum):
    """Connection state of a camera's ingest, as shown to operators."""

    DISABLED = "disabled"
    #: Enabled but not streaming now: on demand, nobody watching and no recording planned.
    IDLE = "idle"
    CONNECTING = "connecting"
    ONLINE = "online"
    RECONNECTING = "reconnecting"
    OFFLINE = "offline"


class CameraBrief(NamedTuple):
    """What the console's camera tree shows of a camera's live state: it changes when the state, its reason or
    recording does, never with the stream's figures (bitrate, fps), so comparing two says "something to show"."""

    state: CameraState
    since_us: int
    reason: str
    recording: bool


class GapCause(StrEnum):
    """Why a stretch of time has no recording (the integrity view shows these)."""

    CAMERA_OFFLINE = "camera_offline"
    VIGIL_STOPPED = "vigil_stopped"
    DISK_FULL = "disk_full"
    DISABLED = "disabled"
    #: Outside the camera's recording plan (or a live-only camera): nothing was meant to be recorded.
    NOT_SCHEDULED = "not_scheduled"
    STREAM_ERROR = "stream_error"
    DELETED_BY_RETENTION = "retention"
    #: Just after recording was meant to begin (camera added or enabled, Vigil started, back online, the plan
    #: or free space let it record again): connecting and waiting for the first keyframe.
    STARTING = "starting"
    UNKNOWN = "unknown"
