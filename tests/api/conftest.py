"""Fixtures for API tests (the helpers live in apikit.py)."""

from apikit import api

__all__ = ["api"]
