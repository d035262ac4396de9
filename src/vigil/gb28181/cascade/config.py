"""What the cascade needs to know about us and about one upper platform (decrypted, validated rows)."""

from __future__ import annotations

from dataclasses import dataclass

from vigil.protocols.gb28181.charset import Charset

__all__ = ["LocalPlatform", "UpperConfig"]


@dataclass(frozen=True, slots=True)
class LocalPlatform:
    """This node as a lower platform: its own 20-digit ID (type 200) and SIP domain."""

    platform_id: str
    domain: str
    name: str = "Vigil"
    manufacturer: str = "Vigil"
    model: str = "platform"
    firmware: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class UpperConfig:
    """One upper platform as configured (``gb_uppers`` row with the password decrypted)."""

    id: int
    platform_id: str
    domain: str
    host: str
    port: int
    #: "udp" or "tcp".
    transport: str
    password: str
    register_expires_s: int
    keepalive_interval_s: int
    charset: Charset
    enabled: bool = True
    name: str = ""

    @property
    def label(self) -> str:
        """How logs and audit rows name it."""
        return f"upper {self.platform_id}@{self.host}:{self.port}"
