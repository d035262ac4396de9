"""argon2id hashing, secrets at rest, and the role table."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from vigil.access.passwords import Passwords
from vigil.access.roles import allows
from vigil.access.secrets import SecretBox
from vigil.domain.errors import Invalid

CHEAP = Passwords(time_cost=1, memory_cost_kib=1024, parallelism=1)


async def test_hash_is_argon2id_and_verifies() -> None:
    hashed = await CHEAP.hash("天网 password")
    assert hashed.startswith("$argon2id$")
    assert await CHEAP.verify(hashed, "天网 password")
    assert not await CHEAP.verify(hashed, "天网 passwordX")
    assert not await CHEAP.verify("not a hash", "天网 password")
    assert not await CHEAP.verify(None, "not-a-real-password")  # the dummy hash never admits anyone


async def test_default_parameters_are_argon2_defaults() -> None:
    hashed = await Passwords().hash("long enough")
    assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=4$")


async def test_password_length_policy() -> None:
    with pytest.raises(Invalid, match="at least 8"):
        await CHEAP.hash("short")
    with pytest.raises(Invalid, match="at most 256"):
        await CHEAP.hash("x" * 257)


def test_secret_box_creates_private_key_once_and_round_trips(tmp_path: Path) -> None:
    box = SecretBox.in_data_dir(tmp_path / "data")
    token = box.encrypt("摄像机密码")
    assert "摄像机密码" not in token
    assert box.key_path.exists()
    assert stat.S_IMODE(box.key_path.stat().st_mode) == 0o600
    key = box.key_path.read_bytes()
    again = SecretBox.in_data_dir(tmp_path / "data")  # a restart reads the same key
    assert again.decrypt(token) == "摄像机密码"
    assert box.key_path.read_bytes() == key
    assert box.encrypt("") == "" and box.decrypt("") == ""


def test_secret_from_another_key_is_a_clear_error(tmp_path: Path) -> None:
    token = SecretBox(tmp_path / "a.key").encrypt("pw")
    with pytest.raises(Invalid, match="cannot be decrypted"):
        SecretBox(tmp_path / "b.key").decrypt(token)


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("viewer", {"view", "live"}),
        ("operator", {"view", "live", "playback", "export", "lock", "ptz", "alarm"}),
        ("admin", {"view", "live", "playback", "export", "lock", "ptz", "alarm", "edit", "delete"}),
        ("intruder", set()),
    ],
)
def test_role_table(role: str, allowed: set[str]) -> None:
    actions = ("view", "live", "playback", "export", "lock", "ptz", "alarm", "edit", "delete")
    assert {a for a in actions if allows(role, a)} == allowed  # type: ignore[arg-type]
