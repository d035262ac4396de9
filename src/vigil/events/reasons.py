"""The reasons Vigil itself writes on camera events, in one place.

The console shows each in the operator's language by matching these exact forms
(web/src/lib/reason.ts, i18n block ``reason``; tests/events/test_reasons.py holds the three together),
so change a form here and there together. Words that come from elsewhere — a camera's answer, an OS
error string, a path — travel inside them as they came.
"""

from __future__ import annotations

RECORDING_ALWAYS = "recording always"
LIVE_ONLY = "live only: this camera is never recorded"
DISABLED_BY_USER = "disabled by user"
ENABLED_BY_USER = "enabled by user"
SPACE_AGAIN = "space available on a recording volume"
NO_VOLUME_ROOM = "no recording volume has free space left"


def inside_plan(plan: str) -> str:
    """Recording starts: the recording plan (its text form, ``Mon-Fri 08:00-18:00``) covers now."""
    return f"inside the recording plan ({plan})"


def outside_plan(plan: str) -> str:
    return f"outside the recording plan ({plan})"


def no_intact_pictures(seconds: float) -> str:
    """A hole in one camera session's stream (the connection stayed up)."""
    return f"no intact pictures for {seconds:.1f} s; connection kept"


def no_space_to_start(volume: str) -> str:
    return f"no space to start a segment on {volume}"


def full_while_writing(error: str) -> str:
    return f"volume full while writing: {error}"


def segment_gone(path: str, volume: str) -> str:
    """Start-up recovery: an indexed segment's file is missing."""
    return f"segment file {path} on {volume} is gone"


def segment_discarded(path: str) -> str:
    return f"{path}: no complete fragment; deleted"


def segment_cut(path: str, frames: int) -> str:
    return f"{path}: cut at its last complete fragment ({frames} frames kept)"
