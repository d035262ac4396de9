"""``vigil sim --gb28181``: simulated GB/T 28181 devices (signalling: register, keepalive, queries)."""

from vigil.sim.gb28181.device import DeviceConfig, DeviceState, DeviceStats, GbDevice, channel_id, device_id
from vigil.sim.gb28181.runner import GbSimOptions, GbSimRunner, GbSimStats, run_gb_sim

__all__ = [
    "DeviceConfig",
    "DeviceState",
    "DeviceStats",
    "GbDevice",
    "GbSimOptions",
    "GbSimRunner",
    "GbSimStats",
    "channel_id",
    "device_id",
    "run_gb_sim",
]
