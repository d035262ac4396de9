"""Vigil: video networking platform for public-safety camera networks."""

__version__ = "0.1.0"
