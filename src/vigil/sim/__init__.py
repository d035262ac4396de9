"""``vigil sim``: simulated RTSP cameras looping video files, for demos, tests and load tests."""

from vigil.sim.camera import CameraFaults
from vigil.sim.clip import Clip, ClipError, build_clip, load_clip
from vigil.sim.server import SimServer, SimStats

__all__ = ["CameraFaults", "Clip", "ClipError", "SimServer", "SimStats", "build_clip", "load_clip"]
