"""Camera credentials encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256).

The key lives in ``DATA/secret.key``, created 0600 on first use. Losing it makes stored camera
passwords unreadable (cameras must then be re-entered); it is never written to the database.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from vigil.domain.errors import Invalid

KEY_FILE_NAME = "secret.key"


class SecretBox:
    """Encrypts and decrypts short strings (camera passwords) with the node's key file."""

    def __init__(self, key_path: Path) -> None:
        self.key_path = key_path
        self._fernet: Fernet | None = None

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> SecretBox:
        """The box whose key file is ``data_dir/secret.key``."""
        return cls(data_dir / KEY_FILE_NAME)

    def _box(self) -> Fernet:
        if self._fernet is None:
            self._fernet = Fernet(self._load_or_create_key())
        return self._fernet

    def _load_or_create_key(self) -> bytes:
        try:
            return self.key_path.read_bytes().strip()
        except FileNotFoundError:
            pass
        self.key_path.parent.mkdir(parents=True, exist_ok=True)
        key = Fernet.generate_key()
        # O_EXCL: if another process created the key meanwhile, use theirs instead of overwriting it.
        try:
            fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return self.key_path.read_bytes().strip()
        with os.fdopen(fd, "wb") as f:
            f.write(key + b"\n")
        return key

    def encrypt(self, plaintext: str) -> str:
        """Encrypt ``plaintext``; the empty string stays empty (no password)."""
        if not plaintext:
            return ""
        return self._box().encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """Decrypt what :meth:`encrypt` returned; raise :class:`Invalid` if the key does not match."""
        if not token:
            return ""
        try:
            return self._box().decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError) as exc:
            raise Invalid(f"stored secret cannot be decrypted with {self.key_path} (key replaced?)") from exc
