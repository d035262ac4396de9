"""Cameras: what the console reads (``CameraOut``), writes (``CameraIn``/``CameraPatch``) and imports.

``CameraIn`` holds every rule that needs no database (ID format, URL, coordinates, enums); the
router adds the rules that do (region exists and is in scope, department exists, unique gb_id).
The CSV importer validates each row through the same model, so both paths give the same messages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from vigil.domain.camera import CameraCategory, CameraState, Definition, PtzType
from vigil.domain.errors import Invalid
from vigil.domain.ids import CAMERA_TYPES, parse_gb_id
from vigil.domain.recording_plan import (
    MAX_ENTRIES,
    PlanError,
    RecordingMode,
    RecordingPlan,
    format_time,
    make_plan,
    parse_time,
)

RTSP_SCHEMES = ("rtsp", "rtsps")


class CameraStatus(BaseModel):
    """Live state of a camera's ingest, from the runtime (``None`` = not known yet)."""

    state: CameraState
    since_us: int
    reason: str = ""
    bitrate_bps: float | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    codec: str | None = None
    #: The camera's audio codec (aac, pcma, pcmu) while it sends audio that is carried; None without audio.
    audio: str | None = None
    recording: bool = False
    #: Corrupt or lost packets/pictures dropped by ingest since the camera's pipeline started.
    corrupt_packets: int = 0


class PlanRange(BaseModel):
    """One recording-plan entry: record on ``weekdays`` (1 = Monday … 7 = Sunday) from ``start`` to ``end``.

    Times are ``HH:MM`` in the node's time zone (setting ``timezone``); ``end`` may be ``24:00``. A range
    never crosses midnight: write a night shift as two entries.
    """

    model_config = ConfigDict(extra="forbid")
    weekdays: list[int] = Field(min_length=1, max_length=7, examples=[[1, 2, 3, 4, 5]])
    start: str = Field(max_length=5, examples=["08:00"])
    end: str = Field(max_length=5, examples=["18:00"])


def plan_of_ranges(ranges: Sequence[PlanRange]) -> RecordingPlan:
    """The domain plan of API ranges; PlanError (naming the entry) when a range is invalid or overlaps."""
    return make_plan(
        (
            r.weekdays,
            parse_time(r.start, field=f"entry {i + 1} start"),
            parse_time(r.end, field=f"entry {i + 1} end"),
        )
        for i, r in enumerate(ranges)
    )


def ranges_of_plan(plan: RecordingPlan) -> list[PlanRange]:
    return [
        PlanRange(weekdays=sorted(e.weekdays), start=format_time(e.start_min), end=format_time(e.end_min))
        for e in plan.entries
    ]


class _CameraFields(BaseModel):
    name: str = Field(max_length=100)
    rtsp_url: str = Field(max_length=1000)
    username: str = Field("", max_length=100)
    region_code: str = Field(max_length=20)
    department_id: int | None = None
    category: CameraCategory = CameraCategory.CLASS_1
    latitude: float | None = None
    longitude: float | None = None
    address: str = Field("", max_length=200)
    ptz_type: PtzType = PtzType.UNKNOWN
    definition: Definition = Definition.HD
    enabled: bool = True
    retention_days: int | None = None
    #: ``always`` (default), ``plan`` (inside ``recording_plan``) or ``never`` (live view only, streamed on demand).
    recording_mode: RecordingMode = RecordingMode.ALWAYS
    #: When a ``plan`` camera records; kept (but unused) in the other modes.
    recording_plan: list[PlanRange] = Field(default_factory=list, max_length=MAX_ENTRIES, validate_default=True)


class CameraOut(_CameraFields):
    id: int
    gb_id: str
    #: Where media comes from: ``rtsp`` (pulled from ``rtsp_url``) or ``gb28181`` (a channel of a GB device).
    source_kind: str = "rtsp"
    has_password: bool
    status: CameraStatus
    #: When a complete GB/T 28181 re-catalog (or a ``DEL`` event) dropped this channel (UNIX µs); it is kept
    #: disabled, with its recordings, until the device lists it again. ``None``: not removed.
    removed_us: int | None = Field(
        None, description="When the GB/T 28181 device stopped listing this channel (UNIX µs); null if it still does"
    )


class CameraCount(BaseModel):
    """How many cameras a listing's filters select, over all its pages."""

    total: int


class CameraStatusBrief(BaseModel):
    """One camera in the status feed: what its tree node shows besides its name, and nothing else."""

    id: int
    enabled: bool
    removed_us: int | None
    state: CameraState
    since_us: int
    reason: str
    recording: bool


class CameraStatusFeed(BaseModel):
    """``GET /api/cameras/status``: the cameras whose status changed since ``since``, and a cursor to ask again.

    ``full``: the cursor was missing, unknown (another server process, e.g. before a restart) or too old;
    ``cameras`` then lists every camera in scope and replaces what the client holds. Otherwise it lists the
    changed ones, to merge. ``added``/``updated``: their base info (name, GB ID, region) is new, load it;
    ``deleted``: gone, or moved out of the caller's scope."""

    cursor: str
    full: bool
    cameras: list[CameraStatusBrief]
    added: list[int]
    updated: list[int]
    deleted: list[int]


class CameraFigures(BaseModel):
    """One camera's stream figures as measured now (what ``CameraStatus`` holds besides its state)."""

    id: int
    bitrate_bps: float | None
    fps: float | None
    width: int | None
    height: int | None
    codec: str | None
    audio: str | None
    corrupt_packets: int


class CameraIn(_CameraFields):
    """A camera to create (or the merged result of a PATCH); ``password`` None means none/unchanged."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    gb_id: str
    password: str | None = Field(None, max_length=200)

    @field_validator("gb_id")
    @classmethod
    def _gb_id(cls, value: str) -> str:
        try:
            parse_gb_id(value, allowed_types=CAMERA_TYPES)
        except Invalid as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("region_code")
    @classmethod
    def _region(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("rtsp_url")
    @classmethod
    def _rtsp_url(cls, value: str, info: ValidationInfo) -> str:
        if not value and (info.context or {}).get("source_kind", "rtsp") != "rtsp":
            return value  # a GB/T 28181 channel: media comes over SIP/RTP, there is no URL to pull
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"not a valid URL: {exc}") from None
        if parts.scheme.lower() not in RTSP_SCHEMES:
            raise ValueError(f"must start with rtsp:// or rtsps://, got {value[:40]!r}")
        if not parts.hostname:
            raise ValueError("must name a host, e.g. rtsp://192.168.1.64:554/Streaming/Channels/101")
        if port == 0:
            raise ValueError("port must be 1-65535")
        if any(c.isspace() for c in value):
            raise ValueError("must not contain spaces (percent-encode them as %20)")
        return value

    @field_validator("latitude")
    @classmethod
    def _latitude(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and -90 <= value <= 90):
            raise ValueError(f"must be between -90 and 90 degrees (WGS-84), got {value}")
        return value

    @field_validator("longitude")
    @classmethod
    def _longitude(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and -180 <= value <= 180):
            raise ValueError(f"must be between -180 and 180 degrees (WGS-84), got {value}")
        return value

    @field_validator("retention_days")
    @classmethod
    def _retention(cls, value: int | None) -> int | None:
        if value is not None and not (1 <= value <= 3650):
            raise ValueError(f"must be 1-3650 days or empty for the node default, got {value}")
        return value

    @field_validator("recording_plan")
    @classmethod
    def _recording_plan(cls, value: list[PlanRange], info: ValidationInfo) -> list[PlanRange]:
        try:
            plan_of_ranges(value)
        except PlanError as exc:
            raise ValueError(str(exc)) from None
        if info.data.get("recording_mode") is RecordingMode.PLAN and not value:
            raise ValueError("a camera recording by plan needs at least one time range")
        return value

    @model_validator(mode="after")
    def _credentials_out_of_url(self) -> CameraIn:
        # Credentials typed into the URL move to username/password so the URL (which the API returns)
        # never carries a password.
        parts = urlsplit(self.rtsp_url)
        if parts.username is None and parts.password is None:
            return self
        if parts.username and not self.username:
            self.username = unquote(parts.username)
        if parts.password and self.password is None:
            self.password = unquote(parts.password)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host + (f":{parts.port}" if parts.port else "")
        self.rtsp_url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        return self


class CameraPatch(BaseModel):
    """Fields to change; the merged camera is validated as a whole (``CameraIn``). ``password: ""`` clears it."""

    model_config = ConfigDict(extra="forbid")
    gb_id: str | None = None
    name: str | None = None
    rtsp_url: str | None = None
    username: str | None = None
    password: str | None = None
    region_code: str | None = None
    department_id: int | None = None
    category: CameraCategory | None = None
    latitude: float | None = None
    longitude: float | None = None
    address: str | None = None
    ptz_type: PtzType | None = None
    definition: Definition | None = None
    enabled: bool | None = None
    retention_days: int | None = None
    recording_mode: RecordingMode | None = None
    recording_plan: list[PlanRange] | None = Field(None, max_length=MAX_ENTRIES)


class ImportRowError(BaseModel):
    """One problem in an imported file; ``row`` is the spreadsheet line (the header is row 1)."""

    row: int
    field: str
    message: str


class ImportResult(BaseModel):
    imported: int
    updated: int
    errors: list[ImportRowError]
    dry_run: bool = False


class ImportRejected(ImportResult):
    """The 422 body of an import with errors: nothing was written."""

    detail: str
    code: str


class CameraEventOut(BaseModel):
    at_us: int
    kind: str
    level: str
    reason: str
