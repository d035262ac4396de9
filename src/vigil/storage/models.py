"""Database rows. API responses are separate models (api/schemas); these are storage only.

Times are integers in UNIX microseconds (``*_us``): unambiguous across SQLite and
PostgreSQL, no naive datetimes, cheap range queries on the segment index.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Region(Base):
    """An administrative region (GB civil code: 2/4/6/8 digits) or a custom node under one."""

    __tablename__ = "regions"
    code: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    parent_code: Mapped[str | None] = mapped_column(
        ForeignKey("regions.code", ondelete="RESTRICT"), index=True, default=None
    )


class Department(Base):
    __tablename__ = "departments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    region_code: Mapped[str | None] = mapped_column(ForeignKey("regions.code"), default=None)


class Camera(Base):
    __tablename__ = "cameras"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    gb_id: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    source_kind: Mapped[str] = mapped_column(String(16), default="rtsp")
    rtsp_url: Mapped[str] = mapped_column(String(1000), default="")
    username: Mapped[str] = mapped_column(String(100), default="")
    #: Encrypted at rest (access/secrets.py); never returned by the API.
    password_enc: Mapped[str] = mapped_column(Text, default="")
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"), default=None)
    category: Mapped[str] = mapped_column(String(1), default="1")
    latitude: Mapped[float | None] = mapped_column(Float, default=None)
    longitude: Mapped[float | None] = mapped_column(Float, default=None)
    address: Mapped[str] = mapped_column(String(200), default="")
    ptz_type: Mapped[str] = mapped_column(String(1), default="0")
    definition: Mapped[str] = mapped_column(String(2), default="hd")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    retention_days: Mapped[int | None] = mapped_column(Integer, default=None)
    #: ``always`` / ``plan`` / ``never`` (domain/recording_plan.py); existing rows keep recording always.
    recording_mode: Mapped[str] = mapped_column(String(8), default="always", server_default="always")
    #: The plan in its text form (``Mon-Fri 08:00-18:00; Sat 09:00-12:00``), read when the mode is ``plan``.
    recording_plan: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_us: Mapped[int] = mapped_column(BigInteger)
    updated_us: Mapped[int] = mapped_column(BigInteger)
    #: GB/T 28181 channels: the device (NVR, lower platform) whose catalog lists this camera.
    gb_device_id: Mapped[str | None] = mapped_column(String(20), index=True, default=None)
    #: The business group (215) or virtual organisation (216) node it sits under in that catalog.
    gb_parent_id: Mapped[str | None] = mapped_column(String(20), default=None)
    #: Channel status from the catalog / NOTIFY: ON, OFF, VLOST, DEFECT…; empty when unknown.
    gb_status: Mapped[str] = mapped_column(String(8), default="")
    manufacturer: Mapped[str] = mapped_column(String(100), default="")
    model: Mapped[str] = mapped_column(String(100), default="")
    #: When the device's catalog dropped the channel (DEL, or missing from a full catalog): the row is
    #: disabled and kept so its recordings stay reachable; None while listed.
    removed_us: Mapped[int | None] = mapped_column(BigInteger, default=None)


class CameraEvent(Base):
    """A timestamped state change or fault of one camera (online, offline, disk full, ...)."""

    __tablename__ = "camera_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    camera_id: Mapped[int | None] = mapped_column(Integer, index=True, default=None)
    at_us: Mapped[int] = mapped_column(BigInteger, index=True)
    kind: Mapped[str] = mapped_column(String(32))
    level: Mapped[str] = mapped_column(String(16), default="info")
    reason: Mapped[str] = mapped_column(Text, default="")


class Segment(Base):
    """One recorded fMP4 file. ``path`` is relative to its volume; ``chain`` links segments per camera."""

    __tablename__ = "segments"
    __table_args__ = (Index("ix_segments_camera_start", "camera_id", "start_us"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    camera_id: Mapped[int] = mapped_column(Integer)
    volume: Mapped[str] = mapped_column(String(500))
    path: Mapped[str] = mapped_column(String(500))
    start_us: Mapped[int] = mapped_column(BigInteger)
    end_us: Mapped[int] = mapped_column(BigInteger)
    bytes: Mapped[int] = mapped_column(BigInteger)
    frames: Mapped[int] = mapped_column(Integer)
    codec: Mapped[str] = mapped_column(String(8))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    #: sha256(previous segment's chain + this segment's sha256): a deleted or altered segment breaks it.
    chain: Mapped[str] = mapped_column(String(64))
    #: "complete", or "recovered" (cut at the last whole fragment after a crash).
    status: Mapped[str] = mapped_column(String(16), default="complete")


class DeletedRange(Base):
    """Recorded time of one camera that retention deleted (age limit or disk high-water mark).

    The integrity view reads these so such a stretch shows as "deleted by retention", not as an unknown gap.
    Deletions that continue the camera's latest range extend that row (retention deletes oldest first), so
    there is about one row per recorded stretch, not one per pass.
    """

    __tablename__ = "deleted_ranges"
    __table_args__ = (Index("ix_deleted_ranges_camera_end", "camera_id", "end_us"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    camera_id: Mapped[int] = mapped_column(Integer)
    start_us: Mapped[int] = mapped_column(BigInteger)
    end_us: Mapped[int] = mapped_column(BigInteger)
    #: "age" (past the camera's retention days) or "disk" (high-water mark); the latest deletion's.
    reason: Mapped[str] = mapped_column(String(8))
    deleted_us: Mapped[int] = mapped_column(BigInteger)


class EvidenceLock(Base):
    """A legal hold: segments overlapping [start_us, end_us) survive retention and disk cleanup."""

    __tablename__ = "evidence_locks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    camera_id: Mapped[int] = mapped_column(Integer, index=True)
    start_us: Mapped[int] = mapped_column(BigInteger)
    end_us: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_us: Mapped[int] = mapped_column(BigInteger)


class NodeRun(Base):
    """One run of a Vigil process; gaps outside any run's [started, last_alive] were 'Vigil stopped'."""

    __tablename__ = "node_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node: Mapped[str] = mapped_column(String(64), default="local")
    started_us: Mapped[int] = mapped_column(BigInteger)
    last_alive_us: Mapped[int] = mapped_column(BigInteger)
    clean_stop: Mapped[bool] = mapped_column(Boolean, default=False)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100), default="")
    password_hash: Mapped[str] = mapped_column(String(200))
    #: "admin", "operator" or "viewer" (access/roles.py).
    role: Mapped[str] = mapped_column(String(16))
    #: Root of the region subtree this user may see; None = everything (admins of the whole node).
    region_code: Mapped[str | None] = mapped_column(ForeignKey("regions.code"), default=None)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until_us: Mapped[int] = mapped_column(BigInteger, default=0)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    created_us: Mapped[int] = mapped_column(BigInteger)


class AuthSession(Base):
    """A login session; the bearer token is stored only as its SHA-256."""

    __tablename__ = "auth_sessions"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_us: Mapped[int] = mapped_column(BigInteger)
    expires_us: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(100), default="")


class AuditRow(Base):
    """One audited action. ``hash`` = sha256(prev_hash + canonical row): editing any row breaks the chain."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at_us: Mapped[int] = mapped_column(BigInteger, index=True)
    user_id: Mapped[int | None] = mapped_column(Integer, default=None)
    username: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(200))
    allowed: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[str] = mapped_column(Text, default="")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class Export(Base):
    __tablename__ = "exports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    camera_id: Mapped[int] = mapped_column(Integer, index=True)
    start_us: Mapped[int] = mapped_column(BigInteger)
    end_us: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(64))
    created_us: Mapped[int] = mapped_column(BigInteger)


class GbDevice(Base):
    """A GB/T 28181 device (IPC, NVR, lower platform) known to the SIP registrar.

    A device that registers without a row (or with ``admitted`` False) is refused with 403 and
    recorded as pending, so an admin can admit it; only admitted devices go online.
    """

    __tablename__ = "gb_devices"
    device_id: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    #: The device's own digest password, encrypted at rest (access/secrets.py); empty = the global one.
    password_enc: Mapped[str] = mapped_column(Text, default="")
    admitted: Mapped[bool] = mapped_column(Boolean, default=False)
    transport: Mapped[str] = mapped_column(String(3), default="udp")
    #: Where later requests go (Via received/rport, else the packet source), ``host:port``.
    remote_address: Mapped[str] = mapped_column(String(100), default="")
    last_register_us: Mapped[int | None] = mapped_column(BigInteger, default=None)
    expires_us: Mapped[int | None] = mapped_column(BigInteger, default=None)
    last_keepalive_us: Mapped[int | None] = mapped_column(BigInteger, default=None)
    keepalive_interval_s: Mapped[int | None] = mapped_column(Integer, default=None)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    manufacturer: Mapped[str] = mapped_column(String(100), default="")
    model: Mapped[str] = mapped_column(String(100), default="")
    firmware: Mapped[str] = mapped_column(String(100), default="")
    charset: Mapped[str] = mapped_column(String(16), default="GB2312")
    #: ``X-GB-Ver`` of the last REGISTER (2.0 = 2016, 3.0 = 2022); empty when the device sent none.
    gb_version: Mapped[str] = mapped_column(String(8), default="")
    #: Live media transport asked of this device (udp, tcp-passive, tcp-active); None = ``gb28181.media_transport``.
    media_transport: Mapped[str | None] = mapped_column(String(16), default=None)
    #: MobilePosition subscription interval asked of this device (5..3600 s); None = not subscribed.
    position_interval_s: Mapped[int | None] = mapped_column(Integer, default=None)
    created_us: Mapped[int] = mapped_column(BigInteger)
    #: When ``online`` last changed (the console's "online since" / "offline since").
    state_since_us: Mapped[int | None] = mapped_column(BigInteger, default=None)


class GbCatalogNode(Base):
    """A business group (type 215) or virtual organisation (216) from a device's catalog.

    Kept apart from ``regions`` on purpose: regions are the access-scope tree (civil codes nest by
    prefix and a user's scope is a region subtree), while groups and virtual organisations are a
    second, business view over the same cameras that may cut across regions. Mixing them would make a
    user scoped to a virtual organisation see cameras of other regions. Channels point at their node
    through ``cameras.gb_parent_id``; nodes point at their parent through ``parent_id``.
    """

    __tablename__ = "gb_catalog_nodes"
    node_id: Mapped[str] = mapped_column(String(20), primary_key=True)
    #: The device whose catalog announced the node (its tree, its deletion on re-catalog).
    device_id: Mapped[str] = mapped_column(String(20), index=True)
    #: ``business_group`` (215) or ``virtual_organization`` (216).
    kind: Mapped[str] = mapped_column(String(24))
    name: Mapped[str] = mapped_column(String(100), default="")
    #: The parent node (a 215/216 node) or None at the top of the device's tree.
    parent_id: Mapped[str | None] = mapped_column(String(20), default=None)
    business_group_id: Mapped[str | None] = mapped_column(String(20), default=None)
    updated_us: Mapped[int] = mapped_column(BigInteger)


class GbDeviceEvent(Base):
    """A timestamped state change of one GB/T 28181 device (registered, online, offline, unauthorised)."""

    __tablename__ = "gb_device_events"
    __table_args__ = (Index("ix_gb_device_events_device_at", "device_id", "at_us"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: Not a foreign key: an unauthorised device's events are kept even if its pending row is deleted.
    device_id: Mapped[str] = mapped_column(String(20))
    at_us: Mapped[int] = mapped_column(BigInteger, index=True)
    kind: Mapped[str] = mapped_column(String(32))
    level: Mapped[str] = mapped_column(String(16), default="info")
    reason: Mapped[str] = mapped_column(Text, default="")


class GbAlarm(Base):
    """One alarm a GB/T 28181 device reported (Notify/Alarm, A.2.5.3), as the device described it.

    ``source_id`` is the DeviceID the alarm names (a channel or the device itself); ``camera_id`` is the
    camera with that GB ID when one exists (alarm scope follows the camera's region), else None
    (a device-level alarm, visible to node-wide users only).
    """

    __tablename__ = "gb_alarms"
    __table_args__ = (Index("ix_gb_alarms_camera_received", "camera_id", "received_us"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: The registered device that sent it.
    device_id: Mapped[str] = mapped_column(String(20), index=True)
    source_id: Mapped[str] = mapped_column(String(20))
    camera_id: Mapped[int | None] = mapped_column(Integer, default=None)
    #: 1 (highest) … 4.
    priority: Mapped[int] = mapped_column(Integer)
    #: 1 phone, 2 device, 3 SMS, 4 GPS, 5 video analysis, 6 device fault, 7 other.
    method: Mapped[int] = mapped_column(Integer)
    alarm_type: Mapped[int | None] = mapped_column(Integer, default=None)
    event_type: Mapped[int | None] = mapped_column(Integer, default=None)
    description: Mapped[str] = mapped_column(Text, default="")
    #: The device's AlarmTime, and when Vigil received it.
    alarm_us: Mapped[int] = mapped_column(BigInteger)
    received_us: Mapped[int] = mapped_column(BigInteger, index=True)
    longitude: Mapped[float | None] = mapped_column(Float, default=None)
    latitude: Mapped[float | None] = mapped_column(Float, default=None)
    #: When an operator sent ResetAlarm (AlarmCmd) for it, and who.
    reset_us: Mapped[int | None] = mapped_column(BigInteger, default=None)
    reset_by: Mapped[str] = mapped_column(String(64), default="")


class GbPosition(Base):
    """One reported position of a mobile channel or device (MobilePosition, A.2.5.6); a bounded history per source."""

    __tablename__ = "gb_positions"
    __table_args__ = (Index("ix_gb_positions_source_at", "source_id", "at_us"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(20))
    source_id: Mapped[str] = mapped_column(String(20))
    camera_id: Mapped[int | None] = mapped_column(Integer, index=True, default=None)
    #: When the device captured the position (its Time / CaptureTime), and when Vigil received it.
    at_us: Mapped[int] = mapped_column(BigInteger)
    received_us: Mapped[int] = mapped_column(BigInteger)
    longitude: Mapped[float] = mapped_column(Float)
    latitude: Mapped[float] = mapped_column(Float)
    #: km/h, degrees from north, metres.
    speed: Mapped[float | None] = mapped_column(Float, default=None)
    direction: Mapped[float | None] = mapped_column(Float, default=None)
    altitude: Mapped[float | None] = mapped_column(Float, default=None)
    height: Mapped[float | None] = mapped_column(Float, default=None)


class GbUpper(Base):
    """An upper GB/T 28181 platform this node registers to as a lower platform (cascade)."""

    __tablename__ = "gb_uppers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: The upper platform's 20-digit ID (To of our REGISTER; From user of its requests to us).
    platform_id: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    #: Its SIP domain / digest realm (10 digits usually).
    domain: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer, default=5060)
    #: "udp" or "tcp".
    transport: Mapped[str] = mapped_column(String(3), default="udp")
    #: Our digest password at the upper platform, encrypted at rest (access/secrets.py).
    password_enc: Mapped[str] = mapped_column(Text, default="")
    register_expires_s: Mapped[int] = mapped_column(Integer, default=3600)
    keepalive_interval_s: Mapped[int] = mapped_column(Integer, default=60)
    charset: Mapped[str] = mapped_column(String(16), default="GB2312")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_us: Mapped[int] = mapped_column(BigInteger)
    updated_us: Mapped[int] = mapped_column(BigInteger)


class GbUpperShare(Base):
    """One camera, one region (its whole subtree), or one business group / virtual organisation (its whole
    subtree: the groups below it and the channels in any of them) shared with an upper platform."""

    __tablename__ = "gb_upper_shares"
    __table_args__ = (
        Index("ux_gb_upper_shares_camera", "upper_id", "camera_id", unique=True),
        Index("ux_gb_upper_shares_region", "upper_id", "region_code", unique=True),
        Index("ux_gb_upper_shares_group", "upper_id", "group_id", unique=True),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    upper_id: Mapped[int] = mapped_column(ForeignKey("gb_uppers.id", ondelete="CASCADE"), index=True)
    camera_id: Mapped[int | None] = mapped_column(ForeignKey("cameras.id", ondelete="CASCADE"), default=None)
    region_code: Mapped[str | None] = mapped_column(ForeignKey("regions.code", ondelete="CASCADE"), default=None)
    #: A ``gb_catalog_nodes.node_id``; not a foreign key: a re-catalog may drop and re-add the node, and the
    #: share should hold across that (a node that stays gone shares nothing).
    group_id: Mapped[str | None] = mapped_column(String(20), default=None)


class GbUpperEvent(Base):
    """A timestamped state change of our registration at an upper platform (registered, offline)."""

    __tablename__ = "gb_upper_events"
    __table_args__ = (Index("ix_gb_upper_events_upper_at", "upper_id", "at_us"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: Not a foreign key: the history outlives a deleted upper platform.
    upper_id: Mapped[int] = mapped_column(Integer)
    at_us: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")
