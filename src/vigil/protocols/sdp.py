"""Session Description Protocol (RFC 8866) — the subset RTSP cameras use, parsed and serialised symmetrically.

A description is kept as its ordered ``type=value`` lines (session part, then one list per
``m=`` section) so :meth:`SessionDescription.serialize` reproduces the input byte-exactly;
everything Vigil needs (media lines, ``c=``, ``a=rtpmap``, ``a=fmtp``, ``a=control``,
``a=framerate``) is read through typed accessors. :func:`video_description` and
:meth:`SessionDescription.build` build descriptions for the camera simulator.

GB/T 28181 INVITE descriptions (Annex G) add non-RFC lines — ``y=`` (SSRC), ``f=`` (media
format), ``u=<channel>:0`` for history — and ``a=setup``/``a=connection``/``a=downloadspeed``;
they are read through the ``gb_*`` accessors and built by :func:`gb_description`.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from vigil.domain.media import VIDEO_CLOCK_RATE, AudioCodec, Codec

#: Larger than any real camera SDP by two orders of magnitude; matches the RTSP body limit.
MAX_SDP_BYTES = 64 * 1024
MAX_MEDIA_SECTIONS = 64

_LINE = re.compile(r"([a-z])=(.*)")
_DIRECTIONS = frozenset({"sendonly", "recvonly", "sendrecv", "inactive"})
_ENCODINGS = {"H264": Codec.H264, "H265": Codec.H265, "HEVC": Codec.H265}
#: G.711 by static payload type (RFC 3551 table 4: 8 kHz mono), for SDPs that carry no rtpmap for it.
_STATIC_AUDIO = {0: AudioCodec.PCMU, 8: AudioCodec.PCMA}
_G711_ENCODINGS = {"PCMU": AudioCodec.PCMU, "PCMA": AudioCodec.PCMA}


class SdpError(ValueError):
    """Text that is not a usable session description."""


def _is_number(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts "¹", which ``int`` refuses."""
    return text.isascii() and text.isdigit()


@dataclass(frozen=True, slots=True)
class RtpMap:
    """``a=rtpmap:<pt> <encoding>/<clock>[/<channels>]``."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None


@dataclass(frozen=True, slots=True)
class VideoFormat:
    """What a depacketizer needs from one video ``m=`` section.

    ``parameter_sets`` is H.264 ``(sps, pps)`` or H.265 ``(vps, sps, pps)``, raw NAL units,
    or ``()`` when the SDP carries none (or none that decode): in-band ones will follow.
    """

    codec: Codec
    payload_type: int
    clock_rate: int
    parameter_sets: tuple[bytes, ...]
    packetization_mode: int = 0
    profile_level_id: str = ""
    framerate: float | None = None
    control: str | None = None


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """What an audio depacketizer needs from one audio ``m=`` section (AAC or G.711).

    AAC comes as RFC 3640 ``mpeg4-generic`` in AAC-hbr mode: ``config`` is the AudioSpecificConfig
    from the SDP, and each packet starts with AU headers of ``size_length`` + ``index_length`` bits
    (``index_delta_length`` for the second and later ones). G.711 has neither.
    """

    codec: AudioCodec
    payload_type: int
    clock_rate: int
    channels: int = 1
    config: bytes = b""
    size_length: int = 0
    index_length: int = 0
    index_delta_length: int = 0
    control: str | None = None


@dataclass(slots=True)
class MediaDescription:
    """One ``m=`` section: its lines, ``m=`` first."""

    lines: list[tuple[str, str]] = field(default_factory=list)

    def _m(self) -> list[str]:
        return self.lines[0][1].split()

    @property
    def media(self) -> str:
        """``video``, ``audio``, ``application``…"""
        return self._m()[0]

    @property
    def port(self) -> int:
        """Port from the ``m=`` line (0 in RTSP DESCRIBE answers, where SETUP negotiates it)."""
        return int(self._m()[1].split("/")[0])

    @property
    def proto(self) -> str:
        """Transport protocol, e.g. ``RTP/AVP``."""
        return self._m()[2]

    @property
    def formats(self) -> list[str]:
        """Format list (RTP payload types as text)."""
        return self._m()[3:]

    @property
    def connection(self) -> str | None:
        """Media-level ``c=`` value, if any."""
        return _first(self.lines, "c")

    def attributes(self, name: str) -> list[str]:
        """Values of every ``a=<name>:<value>`` (``""`` for a flag attribute ``a=<name>``)."""
        return _attributes(self.lines, name)

    def attribute(self, name: str) -> str | None:
        """The first value of attribute ``name``, or None."""
        values = self.attributes(name)
        return values[0] if values else None

    @property
    def control(self) -> str | None:
        """``a=control`` as written (absolute or relative; see :func:`resolve_control`)."""
        return self.attribute("control")

    @property
    def framerate(self) -> float | None:
        """``a=framerate`` in frames per second, or None if absent or not a number."""
        value = self.attribute("framerate")
        try:
            return float(value) if value else None
        except ValueError:
            return None

    def rtpmap(self, payload_type: int) -> RtpMap | None:
        """The ``a=rtpmap`` for a payload type, or None."""
        for value in self.attributes("rtpmap"):
            pt, _, rest = value.partition(" ")
            if pt.strip() != str(payload_type):
                continue
            parts = rest.strip().split("/")
            if len(parts) < 2 or not _is_number(parts[1]):
                raise SdpError(f"malformed rtpmap {value!r}")
            channels = int(parts[2]) if len(parts) > 2 and _is_number(parts[2]) else None
            return RtpMap(payload_type, parts[0], int(parts[1]), channels)
        return None

    def fmtp(self, payload_type: int) -> dict[str, str]:
        """``a=fmtp`` parameters for a payload type (names lower-case), empty if absent."""
        for value in self.attributes("fmtp"):
            pt, _, rest = value.partition(" ")
            if pt.strip() != str(payload_type):
                continue
            params: dict[str, str] = {}
            for item in rest.split(";"):
                name, sep, val = item.strip().partition("=")
                if name:
                    params[name.strip().lower()] = val.strip() if sep else ""
            return params
        return {}

    @property
    def direction(self) -> str | None:
        """``sendonly``, ``recvonly``, ``sendrecv`` or ``inactive`` when the section states one."""
        return next((value for kind, value in self.lines if kind == "a" and value in _DIRECTIONS), None)

    @property
    def gb_transport(self) -> GbTransport | None:
        """GB/T 28181 media transport as this description's author states it; None for TCP without ``a=setup``."""
        if self.proto.upper() == "RTP/AVP":
            return GbTransport.UDP
        if self.proto.upper() == "TCP/RTP/AVP":
            setup = (self.attribute("setup") or "").strip().lower()
            return {"active": GbTransport.TCP_ACTIVE, "passive": GbTransport.TCP_PASSIVE}.get(setup)
        return None

    @property
    def gb_download_speed(self) -> int | None:
        """``a=downloadspeed`` (any letter case, as some peers send it), or None."""
        for kind, value in self.lines:
            attr, sep, rest = value.partition(":")
            if kind == "a" and sep and attr.lower() == "downloadspeed" and _is_number(rest.strip()):
                return int(rest.strip())
        return None

    @property
    def gb_filesize(self) -> int | None:
        """``a=filesize`` of a Download answer in bytes, or None."""
        value = self.attribute("filesize")
        return int(value.strip()) if value is not None and _is_number(value.strip()) else None

    def _payloads(self) -> Iterator[tuple[int, RtpMap | None]]:
        """Each numeric payload type of the ``m=`` line, in the order offered, with its ``a=rtpmap``."""
        for fmt in self.formats:
            if _is_number(fmt):
                yield int(fmt), self.rtpmap(int(fmt))

    def video_format(self) -> VideoFormat | None:
        """The first H.264/H.265 payload of a video section, or None if it carries neither."""
        if self.media != "video":
            return None
        for payload_type, rtpmap in self._payloads():
            if rtpmap is None:
                continue
            codec = _ENCODINGS.get(rtpmap.encoding.upper())
            if codec is None:
                continue
            params = self.fmtp(payload_type)
            if codec is Codec.H264:
                sets = _decode_sprops(params.get("sprop-parameter-sets", "").split(","))
                sets = _h264_sps_pps(sets)
            else:
                sets = _decode_sprops([params.get(f"sprop-{kind}", "") for kind in ("vps", "sps", "pps")])
                if len(sets) != 3:
                    sets = ()
            mode = params.get("packetization-mode", "0")
            return VideoFormat(
                codec=codec,
                payload_type=payload_type,
                clock_rate=rtpmap.clock_rate,
                parameter_sets=sets,
                packetization_mode=int(mode) if _is_number(mode) else 0,
                profile_level_id=params.get("profile-level-id", ""),
                framerate=self.framerate,
                control=self.control,
            )
        return None

    def audio_format(self) -> AudioFormat | None:
        """The first AAC (AAC-hbr) or G.711 payload of an audio section, or None if it carries neither."""
        if self.media != "audio":
            return None
        for payload_type, rtpmap in self._payloads():
            if rtpmap is None:
                codec = _STATIC_AUDIO.get(payload_type)
                if codec is not None:
                    return AudioFormat(codec, payload_type, 8000, control=self.control)
                continue
            channels = rtpmap.channels or 1
            g711 = _G711_ENCODINGS.get(rtpmap.encoding.upper())
            if g711 is not None:
                return AudioFormat(g711, payload_type, rtpmap.clock_rate, channels, control=self.control)
            if rtpmap.encoding.upper() != "MPEG4-GENERIC":
                continue
            params = self.fmtp(payload_type)
            try:
                config = bytes.fromhex(params.get("config", ""))
                size, index, delta = (
                    int(params.get(name, "0")) for name in ("sizelength", "indexlength", "indexdeltalength")
                )
            except ValueError:
                continue
            # AAC-hbr: 13-bit sizes, 3-bit indices (RFC 3640 §3.3.6); other modes (CELP, lbr) are not AAC LC.
            if params.get("mode", "").lower() != "aac-hbr" or len(config) < 2 or not 0 < size <= 16:
                continue
            if not (0 <= index <= 8 and 0 <= delta <= 8):
                continue
            return AudioFormat(
                AudioCodec.AAC, payload_type, rtpmap.clock_rate, channels, config, size, index, delta, self.control
            )
        return None


def _decode_sprops(values: list[str]) -> tuple[bytes, ...]:
    out = []
    for value in values:
        value = value.strip()
        if not value:
            continue
        try:
            out.append(base64.b64decode(value + "=" * (-len(value) % 4), validate=True))
        except (binascii.Error, ValueError):
            continue
    return tuple(nal for nal in out if nal)


def _h264_sps_pps(sets: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """Order sprop-parameter-sets as (sps, pps) by NAL type; () unless both are present."""
    sps = next((nal for nal in sets if nal[0] & 0x1F == 7), None)
    pps = next((nal for nal in sets if nal[0] & 0x1F == 8), None)
    return (sps, pps) if sps is not None and pps is not None else ()


def _first(lines: list[tuple[str, str]], kind: str) -> str | None:
    return next((value for k, value in lines if k == kind), None)


def _attributes(lines: list[tuple[str, str]], name: str) -> list[str]:
    out = []
    for kind, value in lines:
        if kind != "a":
            continue
        attr, sep, rest = value.partition(":")
        if attr == name:
            out.append(rest if sep else "")
    return out


@dataclass(slots=True)
class SessionDescription:
    """A whole description: the session-level lines and the media sections."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)
    #: Line terminator seen when parsing, kept so serialisation is byte-exact.
    line_ending: str = "\r\n"

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        """Parse SDP text; raise :class:`SdpError` saying what is wrong."""
        if len(data) > MAX_SDP_BYTES:
            raise SdpError(f"SDP of {len(data)} bytes exceeds {MAX_SDP_BYTES}")
        if isinstance(data, bytes):
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SdpError("SDP is not UTF-8") from exc
        else:
            text = data
        line_ending = "\r\n" if "\r\n" in text else "\n"
        session = cls(line_ending=line_ending)
        current = session.lines
        for raw in text.split("\n"):
            line = raw.rstrip("\r")
            if not line.strip():
                continue
            match = _LINE.fullmatch(line)
            if not match:
                raise SdpError(f"malformed SDP line {line[:80]!r}")
            kind, value = match[1], match[2]
            if not session.lines and not session.media and kind != "v":
                raise SdpError(f"SDP must start with v=, got {line[:80]!r}")
            if kind == "m":
                parts = value.split()
                if len(parts) < 4 or not _is_number(parts[1].split("/")[0]):
                    raise SdpError(f"malformed media line {line[:80]!r}")
                if len(session.media) >= MAX_MEDIA_SECTIONS:
                    raise SdpError(f"more than {MAX_MEDIA_SECTIONS} media sections")
                section = MediaDescription([(kind, value)])
                session.media.append(section)
                current = section.lines
                continue
            current.append((kind, value))
        if not session.lines:
            raise SdpError("empty SDP")
        if session.lines[0] != ("v", "0"):
            raise SdpError(f"unsupported SDP version {session.lines[0][1]!r}")
        return session

    def serialize(self) -> bytes:
        """Wire bytes: every line, each terminated by ``line_ending``."""
        out = []
        for kind, value in self.lines:
            out.append(f"{kind}={value}")
        for section in self.media:
            out.extend(f"{kind}={value}" for kind, value in section.lines)
        eol = self.line_ending
        return (eol.join(out) + eol).encode("utf-8")

    @property
    def connection(self) -> str | None:
        """Session-level ``c=`` value, if any."""
        return _first(self.lines, "c")

    @property
    def session_name(self) -> str:
        """``s=`` value."""
        return _first(self.lines, "s") or ""

    def attribute(self, name: str) -> str | None:
        """The first session-level attribute ``name``, or None."""
        values = _attributes(self.lines, name)
        return values[0] if values else None

    @property
    def control(self) -> str | None:
        """Session-level ``a=control`` (aggregate control URL), if any."""
        return self.attribute("control")

    @property
    def uri(self) -> str | None:
        """``u=``; in GB/T 28181 history INVITEs ``<channel id>:<n>`` (or a recording URL)."""
        return _first(self.lines, "u")

    @property
    def timing(self) -> tuple[int, int]:
        """``t=<start> <stop>`` (UNIX seconds in GB/T 28181 history INVITEs; ``(0, 0)`` for live)."""
        value = _first(self.lines, "t")
        parts = value.split() if value else []
        if len(parts) != 2 or not all(_is_number(part) for part in parts):
            raise SdpError(f"malformed t= line {value!r}")
        return int(parts[0]), int(parts[1])

    def _gb_line(self, kind: str) -> str | None:
        # GB/T 28181 puts y= and f= after the media lines; accept them at session level too.
        found = _first(self.lines, kind)
        for section in self.media:
            if found is not None:
                break
            found = _first(section.lines, kind)
        return found

    @property
    def gb_ssrc(self) -> str | None:
        """GB/T 28181 ``y=`` as written (10 decimal digits, first digit 0 live / 1 history), or None."""
        value = self._gb_line("y")
        return value.strip() if value is not None else None

    @property
    def gb_ssrc_value(self) -> int | None:
        """``y=`` as the RTP SSRC number, or None when absent or not 1–10 decimal digits."""
        value = self.gb_ssrc
        if value is None or not _is_number(value) or len(value) > 10 or int(value) >= 1 << 32:
            return None
        return int(value)

    @property
    def gb_media_format(self) -> str | None:
        """GB/T 28181 ``f=v/codec/res/fps/rc/kbps a/codec/kbps/rate`` as written, or None."""
        return self._gb_line("f")

    @classmethod
    def build(
        cls,
        media: list[MediaDescription],
        *,
        session_name: str = "Vigil",
        origin_address: str = "127.0.0.1",
        session_id: int = 0,
        control: str = "*",
    ) -> SessionDescription:
        """A description as an RTSP server's DESCRIBE answer carries it."""
        lines = [
            ("v", "0"),
            ("o", f"- {session_id} 1 IN IP4 {origin_address}"),
            ("s", session_name),
            ("c", "IN IP4 0.0.0.0"),
            ("t", "0 0"),
            ("a", f"control:{control}"),
            ("a", "range:npt=0-"),
        ]
        return cls(lines=lines, media=media)


def video_description(
    codec: Codec,
    parameter_sets: tuple[bytes, ...],
    *,
    payload_type: int = 96,
    control: str = "trackID=0",
    framerate: float | None = None,
    profile_level_id: str | None = None,
) -> MediaDescription:
    """An ``m=video`` section for an H.264 ``(sps, pps)`` or H.265 ``(vps, sps, pps)`` stream."""
    encoding = "H264" if codec is Codec.H264 else "H265"
    lines = [("m", f"video 0 RTP/AVP {payload_type}"), ("a", f"rtpmap:{payload_type} {encoding}/{VIDEO_CLOCK_RATE}")]

    def b64(nal: bytes) -> str:
        return base64.b64encode(nal).decode("ascii")

    if codec is Codec.H264:
        params = ["packetization-mode=1"]
        if profile_level_id is None and parameter_sets and len(parameter_sets[0]) >= 4:
            profile_level_id = parameter_sets[0][1:4].hex()
        if profile_level_id:
            params.append(f"profile-level-id={profile_level_id}")
        if parameter_sets:
            params.append("sprop-parameter-sets=" + ",".join(b64(nal) for nal in parameter_sets))
    else:
        params = []
        if len(parameter_sets) == 3:
            params += [
                f"sprop-{kind}={b64(nal)}" for kind, nal in zip(("vps", "sps", "pps"), parameter_sets, strict=True)
            ]
    if params:
        lines.append(("a", f"fmtp:{payload_type} " + ";".join(params)))
    if framerate is not None:
        lines.append(("a", f"framerate:{framerate:g}"))
    lines.append(("a", f"control:{control}"))
    return MediaDescription(lines)


def resolve_control(control: str | None, base: str) -> str:
    """The URL to SETUP/PLAY given an ``a=control`` value and the Content-Base (or request URL).

    Absolute controls are used as is; ``*`` or none means the base itself; a relative control
    is appended to the base with one ``/`` between, as cameras (and ffmpeg/live555) expect —
    RFC 3986 resolution would drop the base's last path segment and most cameras would 404.
    """
    if not control or control == "*":
        return base
    if re.match(r"[A-Za-z][A-Za-z0-9+.\-]*://", control):
        return control
    if base.endswith("/"):
        return base + control.lstrip("/")
    return base + "/" + control.lstrip("/")


class GbTransport(enum.Enum):
    """GB/T 28181 media transport, from the point of view of the SDP's author (Annex D, RFC 4145).

    ``TCP_PASSIVE``: "I listen on the m= port"; ``TCP_ACTIVE``: "I will connect to yours".
    """

    UDP = "UDP"
    TCP_ACTIVE = "TCP-ACTIVE"
    TCP_PASSIVE = "TCP-PASSIVE"


#: Session names of GB/T 28181 INVITEs (s=): live view, playback, download.
GB_SESSION_NAMES = ("Play", "Playback", "Download")
#: Payloads WVP offers in a live INVITE, in its order: PS first, then elementary streams.
GB_OFFER_PAYLOADS: tuple[tuple[int, str], ...] = ((96, "PS"), (98, "H264"), (97, "MPEG4"), (99, "H265"))


def gb_description(
    *,
    session_name: str,
    owner_id: str,
    address: str,
    port: int,
    transport: GbTransport,
    ssrc: str,
    direction: str = "recvonly",
    payloads: Sequence[tuple[int, str]] = GB_OFFER_PAYLOADS,
    uri: str | None = None,
    start: int = 0,
    stop: int = 0,
    download_speed: int | None = None,
    media_format: str | None = None,
) -> SessionDescription:
    """A GB/T 28181 INVITE offer or answer (line order as WVP and devices write it).

    ``owner_id`` is the author's own GB ID (o=, STD22 9.2.3 g); ``uri`` is ``<channel>:0`` for
    Playback/Download; ``start``/``stop`` UNIX seconds for history; ``ssrc`` the 10-digit y=.
    """
    if session_name not in GB_SESSION_NAMES:
        raise SdpError(f"GB/T 28181 session name must be one of {GB_SESSION_NAMES}, not {session_name!r}")
    if not (_is_number(ssrc) and len(ssrc) == 10):
        raise SdpError(f"GB/T 28181 SSRC must be 10 decimal digits, not {ssrc!r}")
    if direction not in _DIRECTIONS or not payloads or not 0 <= port < 65536:
        raise SdpError(f"bad GB/T 28181 media: direction {direction!r}, port {port}, payloads {list(payloads)}")
    lines = [("v", "0"), ("o", f"{owner_id} 0 0 IN IP4 {address}"), ("s", session_name)]
    if uri is not None:
        lines.append(("u", uri))
    lines += [("c", f"IN IP4 {address}"), ("t", f"{start} {stop}")]
    proto = "RTP/AVP" if transport is GbTransport.UDP else "TCP/RTP/AVP"
    # m= lists the formats in ascending order; the rtpmaps follow ``payloads`` (WVP writes 96, 98, 97, 99).
    formats = " ".join(str(pt) for pt in sorted({pt for pt, _ in payloads}))
    media = [("m", f"video {port} {proto} {formats}"), ("a", direction)]
    media += [("a", f"rtpmap:{pt} {encoding}/{VIDEO_CLOCK_RATE}") for pt, encoding in payloads]
    if transport is not GbTransport.UDP:
        media.append(("a", "setup:active" if transport is GbTransport.TCP_ACTIVE else "setup:passive"))
        media.append(("a", "connection:new"))
    if download_speed is not None:
        media.append(("a", f"downloadspeed:{download_speed}"))
    media.append(("y", ssrc))
    if media_format is not None:
        media.append(("f", media_format))
    return SessionDescription(lines=lines, media=[MediaDescription(media)])
