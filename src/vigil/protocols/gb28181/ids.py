"""Classify GB/T 28181 IDs (Annex E.1) as catalog nodes, and derive the SIP domain from an ID (6.1.2).

Builds on :mod:`vigil.domain.ids` (which validates the 20-digit shape); malformed IDs raise
:class:`vigil.domain.errors.Invalid` like there.
"""

from __future__ import annotations

import enum
import re

from vigil.domain.errors import Invalid
from vigil.domain.ids import is_region_code, parse_gb_id

_DOMAIN = re.compile(r"([0-9]{10})(?:\.spvmn\.cn)?", re.IGNORECASE)


class IdKind(enum.Enum):
    """What a catalog ``DeviceID`` names, by length and type code (digits 11-13)."""

    REGION = "region"  # 2/4/6/8-digit civil code
    DEVICE = "device"  # 111-130 front-end main device (DVR, NVR, encoder, ...)
    CHANNEL = "channel"  # 131-199 front-end peripheral (camera, IPC, alarm in/out, ...)
    PLATFORM = "platform"  # 200 central signalling control server
    PLATFORM_SERVER = "platform_server"  # 201-214, 217-299 other platform devices (media, storage, ...)
    BUSINESS_GROUP = "business_group"  # 215
    VIRTUAL_ORGANIZATION = "virtual_organization"  # 216
    USER = "user"  # 300-499 centre and terminal users
    EXTERNAL = "external"  # 500-599 external systems
    EXTENSION = "extension"  # 600-999


PLATFORM_TYPE = 200
BUSINESS_GROUP_TYPE = 215
VIRTUAL_ORGANIZATION_TYPE = 216


def classify_id(value: str) -> IdKind:
    """Classify a catalog ID; raise :class:`Invalid` for anything but 2/4/6/8/20 digits."""
    if is_region_code(value):
        return IdKind.REGION
    type_code = parse_gb_id(value).type_code
    if 111 <= type_code <= 130:
        return IdKind.DEVICE
    if 131 <= type_code <= 199:
        return IdKind.CHANNEL
    if type_code == PLATFORM_TYPE:
        return IdKind.PLATFORM
    if type_code == BUSINESS_GROUP_TYPE:
        return IdKind.BUSINESS_GROUP
    if type_code == VIRTUAL_ORGANIZATION_TYPE:
        return IdKind.VIRTUAL_ORGANIZATION
    if 200 < type_code < 300:
        return IdKind.PLATFORM_SERVER
    if 300 <= type_code < 500:
        return IdKind.USER
    if 500 <= type_code < 600:
        return IdKind.EXTERNAL
    if 600 <= type_code <= 999:
        return IdKind.EXTENSION
    raise Invalid(f"GB/T 28181 ID {value}: type code {type_code:03d} is not assigned")


def region_level(code: str) -> int:
    """1 province, 2 city, 3 district, 4 grass-roots unit, from a 2/4/6/8-digit civil code."""
    if not is_region_code(code):
        raise Invalid(f"region code must have 2, 4, 6 or 8 digits: {code!r}")
    return len(code) // 2


def sip_domain(value: str) -> str:
    """The 10-digit SIP domain of a 20-digit ID, or of a domain written as ``<10 digits>[.spvmn.cn]``."""
    match = _DOMAIN.fullmatch(value)
    if match:
        return match.group(1)
    return parse_gb_id(value).domain
