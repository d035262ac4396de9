"""Typed settings: a YAML file (``vigil.yaml`` or ``--config``) overlaid by ``VIGIL_*`` environment variables.

Each component receives only its own section. Every field says its unit and why it exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Section):
    host: str = Field("127.0.0.1", description="Address the HTTP/WebSocket API and console listen on.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port of the API and console; 0 picks a free one.")


class DatabaseSettings(_Section):
    url: str = Field(
        "",
        description="SQLAlchemy async URL. Empty means SQLite in the data directory "
        "(sqlite+aiosqlite:///DATA/vigil.db); PostgreSQL: postgresql+asyncpg://user@host/db.",
    )


class StorageSettings(_Section):
    volumes: list[Path] = Field(
        default_factory=list,
        description="Recording volumes (directories). Empty means DATA/recordings. New segments go to the "
        "volume with the most free space.",
    )
    segment_seconds: float = Field(
        10.0, gt=0.5, le=600, description="Target segment length; cuts happen on the first keyframe after it."
    )
    fragment_seconds: float = Field(
        1.0,
        gt=0.05,
        le=10,
        description="fMP4 fragment length inside a segment: at most this much is lost if Vigil is killed.",
    )
    high_water_percent: float = Field(
        90.0, gt=1, le=100, description="Disk use (%) at which the oldest unlocked segments are deleted."
    )
    low_water_percent: float = Field(
        85.0, gt=1, le=100, description="Deletion after crossing the high-water mark stops at this use (%)."
    )
    retention_check_seconds: float = Field(60.0, gt=0, description="How often retention and disk use run.")
    default_retention_days: int = Field(30, ge=1, le=3650, description="Retention for cameras without one.")


class IngestSettings(_Section):
    connect_timeout_seconds: float = Field(5.0, gt=0, description="RTSP connect + DESCRIBE/SETUP/PLAY timeout.")
    read_timeout_seconds: float = Field(
        5.0, gt=0, description="No media for this long means the stream dropped; reconnect."
    )
    backoff_initial_seconds: float = Field(1.0, gt=0, description="First reconnect delay after a failure.")
    backoff_max_seconds: float = Field(30.0, gt=0, description="Reconnect delay cap (doubling with jitter).")
    transport: str = Field("tcp", pattern="^(tcp|udp)$", description="RTP transport asked of RTSP cameras.")
    audio: bool = Field(
        True,
        description="Set up RTSP cameras' audio (AAC or G.711) too, when they offer it: recorded and exported "
        "with the video, heard in live view and playback (AAC). Off: video only.",
    )
    on_demand_grace_seconds: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="How long a stream nobody needs any more (last viewer gone, not recording) stays open "
        "before it is closed (GB/T 28181: BYE); spares devices an INVITE per page reload.",
    )
    reconcile_seconds: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="Longest time between two checks of wanted against running streams (a lost stream is "
        "re-started, a plan's start/end applied); checks also fall on every minute boundary.",
    )


class AuthSettings(_Section):
    session_hours: float = Field(12.0, gt=0, description="Console/API session lifetime.")
    lockout_attempts: int = Field(5, ge=1, description="Failed logins in a row that lock an account.")
    lockout_minutes: float = Field(15.0, gt=0, description="How long a locked account stays locked.")


class SimSettings(_Section):
    cameras: int = Field(
        4, ge=0, le=1024, description="Simulated RTSP cameras started with Vigil (0 = none) for demos."
    )
    port: int = Field(8554, ge=0, le=65535, description="RTSP port of the built-in simulator; 0 picks one.")
    media: list[Path] = Field(
        default_factory=list, description="Files the simulator loops; empty means the bundled campus clip."
    )


class Gb28181Settings(_Section):
    enabled: bool = Field(False, description="Run the GB/T 28181 SIP server so devices can register to this node.")
    host: str = Field("0.0.0.0", description="Address the SIP server listens on (UDP and TCP).")
    port: int = Field(5060, ge=0, le=65535, description="SIP port, UDP and TCP; 0 picks a free one (tests).")
    platform_id: str = Field(
        "34020000002000000001",
        pattern=r"^\d{20}$",
        description="This platform's 20-digit GB/T 28181 ID (type code 200 = central signalling server).",
    )
    domain: str = Field(
        "",
        pattern=r"^(\d{10})?$",
        description="SIP domain and digest realm; empty means the first 10 digits of platform_id.",
    )
    password: str | None = Field(
        None,
        description="Platform-wide device password, used for admitted devices without their own password.",
    )
    keepalive_timeout_count: int = Field(
        3, ge=1, le=100, description="Missed keepalives (at the device's interval) before it is marked offline."
    )
    register_expires_max: int = Field(
        3600,
        ge=60,
        le=7 * 86400,
        description="Longest registration accepted, in seconds; a longer Expires is shortened to this.",
    )
    charset: str = Field(
        "GB2312",
        pattern="^(GB2312|GBK|GB18030|UTF-8)$",
        description="MANSCDP charset assumed for new devices until they show their own.",
    )
    subscribe_alarms: bool = Field(
        True, description="SUBSCRIBE to each device's alarms (MANSCDP Query CmdType Alarm) when it comes online."
    )
    alarm_subscribe_expires: int = Field(
        3600,
        ge=60,
        le=86400,
        description="Alarm subscription lifetime asked for, in seconds; refreshed at 80% of what the device grants.",
    )
    control_timeout_s: float = Field(
        5.0, gt=0, le=60, description="How long a device may take to answer a DeviceControl (PTZ, ResetAlarm)."
    )
    media_transport: str = Field(
        "udp",
        pattern="^(udp|tcp-passive|tcp-active)$",
        description=(
            "How media (live, device playback and download) is asked of devices without their own setting: udp "
            "(RTP/AVP), tcp-passive (Vigil listens, the device connects) or tcp-active (Vigil connects to the "
            "device); RFC 4571 framing on TCP."
        ),
    )
    platform_channel_recording: str = Field(
        "never",
        pattern="^(always|never)$",
        description=(
            "Recording mode given to channels a lower platform (type code 200) lists when they first appear: never "
            "(streamed on demand, when someone watches) by default, because a lower platform records its own "
            "cameras and may list 100,000 of them; always pulls and records every one. Channels of devices "
            "(cameras, NVRs) start recording always. Either can be changed per camera afterwards."
        ),
    )
    subscribe_catalog: bool = Field(
        True,
        description="Subscribe to each device's catalog when it comes online, so channel changes arrive as NOTIFYs.",
    )
    catalog_subscribe_expires_s: int = Field(
        600,
        ge=60,
        le=86400,
        description="Catalog subscription Expires in seconds (Annex N default 600); refreshed at 80 % of it.",
    )
    position_subscribe_expires_s: int = Field(
        3600,
        ge=60,
        le=86400,
        description=(
            "MobilePosition subscription Expires in seconds, for devices with a position_interval_s set; "
            "refreshed at 80 % of what the device grants."
        ),
    )

    @model_validator(mode="after")
    def _default_domain(self) -> Gb28181Settings:
        if not self.domain:
            self.domain = self.platform_id[:10]
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_", env_nested_delimiter="__", extra="forbid")

    data_dir: Path = Field(Path("vigil-data"), description="Database, recordings, exports and secrets live here.")
    timezone: str = Field(
        "Asia/Shanghai",
        description="IANA zone of this node's local time: recording plans (Mon-Fri 08:00-18:00) are read in it.",
    )
    server: ServerSettings = Field(default_factory=ServerSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    sim: SimSettings = Field(default_factory=SimSettings)
    gb28181: Gb28181Settings = Field(default_factory=Gb28181Settings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment overrides the file, which init_settings carries.
        return (env_settings, init_settings)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"not a known IANA time zone (e.g. Asia/Shanghai): {value!r}") from exc
        return value

    @property
    def zone(self) -> ZoneInfo:
        """The node's local time zone (``timezone``)."""
        return ZoneInfo(self.timezone)

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite+aiosqlite:///{(self.data_dir / 'vigil.db').resolve()}"

    @property
    def recording_volumes(self) -> list[Path]:
        return self.storage.volumes or [self.data_dir / "recordings"]


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Load ``path`` (YAML) if given, then environment; ``overrides`` win over both (tests, CLI flags)."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: top level must be a mapping of sections")
        data = loaded
    data.update(overrides)
    return Settings(**data)
