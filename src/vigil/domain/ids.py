"""GB/T 28181 20-digit device IDs (2022 Annex E.1) and civil region codes."""

from __future__ import annotations

import re
from dataclasses import dataclass

from vigil.domain.errors import Invalid

_GB_ID = re.compile(r"^\d{20}$")
_REGION_CODE = re.compile(r"^(\d{2}|\d{4}|\d{6}|\d{8})$")

#: Type codes (digits 11-13) that name a camera-like channel (front-end peripherals, 131-199).
CHANNEL_TYPES = range(131, 200)
#: Type codes a camera added by hand may carry: 131 camera, 132 IPC, plus encoders/DVR/NVR channels.
CAMERA_TYPES = frozenset({111, 112, 113, 118, 131, 132})


@dataclass(frozen=True, slots=True)
class GbId:
    """A parsed 20-digit ID: centre code, industry, type, network, serial."""

    value: str

    @property
    def centre(self) -> str:
        return self.value[:8]

    @property
    def industry(self) -> str:
        return self.value[8:10]

    @property
    def type_code(self) -> int:
        return int(self.value[10:13])

    @property
    def network(self) -> int:
        return int(self.value[13])

    @property
    def serial(self) -> str:
        return self.value[14:]

    @property
    def domain(self) -> str:
        """The SIP domain implied by the ID: its first ten digits."""
        return self.value[:10]


def parse_gb_id(value: str, *, allowed_types: frozenset[int] | range | None = None) -> GbId:
    """Validate a 20-digit GB/T 28181 ID; raise :class:`Invalid` saying what is wrong."""
    if not _GB_ID.match(value):
        raise Invalid(f"GB/T 28181 ID must be exactly 20 digits, got {len(value)} characters: {value!r}")
    gid = GbId(value)
    if gid.centre[:2] == "00":
        raise Invalid(f"GB/T 28181 ID {value}: province code (digits 1-2) must not be 00")
    if not (100 <= gid.type_code <= 999):
        raise Invalid(f"GB/T 28181 ID {value}: type code (digits 11-13) {gid.type_code:03d} is not assigned")
    if allowed_types is not None and gid.type_code not in allowed_types:
        raise Invalid(
            f"GB/T 28181 ID {value}: type code {gid.type_code:03d} is not a camera type "
            f"(expected one of {', '.join(f'{t:03d}' for t in sorted(allowed_types))})"
        )
    return gid


def is_region_code(value: str) -> bool:
    """True for a 2/4/6/8-digit civil administrative code (province ... grass-roots unit)."""
    return bool(_REGION_CODE.match(value))


def region_parent(code: str) -> str | None:
    """The parent of a civil code (``"32010203"`` → ``"320102"``), or None for a province."""
    if not is_region_code(code):
        raise Invalid(f"region code must have 2, 4, 6 or 8 digits: {code!r}")
    return code[:-2] or None
