"""Shared values for the cascade tests."""

from __future__ import annotations

from vigil.gb28181.cascade.client import BEIJING

BEIJING_TZ = BEIJING
