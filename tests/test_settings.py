from pathlib import Path

import pytest
from pydantic import ValidationError

from vigil.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_example_config_loads() -> None:
    settings = load_settings(ROOT / "vigil.example.yaml")
    assert settings.storage.volumes == [Path("/srv/vigil/rec1"), Path("/srv/vigil/rec2")]
    assert settings.recording_volumes == settings.storage.volumes
    assert settings.database_url.startswith("sqlite+aiosqlite:///")


def test_unknown_key_is_refused_with_its_name(tmp_path: Path) -> None:
    cfg = tmp_path / "v.yaml"
    cfg.write_text("storage:\n  segmnet_seconds: 5\n")
    with pytest.raises(ValidationError, match="segmnet_seconds"):
        load_settings(cfg)


def test_out_of_range_value_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "v.yaml"
    cfg.write_text("server:\n  port: 70000\n")
    with pytest.raises(ValidationError, match="port"):
        load_settings(cfg)


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "v.yaml"
    cfg.write_text("server:\n  port: 9000\n")
    monkeypatch.setenv("VIGIL_SERVER__PORT", "9100")
    assert load_settings(cfg).server.port == 9100


def test_gb28181_domain_defaults_to_platform_id_prefix(tmp_path: Path) -> None:
    cfg = tmp_path / "v.yaml"
    cfg.write_text('gb28181:\n  platform_id: "41010500002000000001"\n')
    gb = load_settings(cfg).gb28181
    assert not gb.enabled
    assert gb.domain == "4101050000"
    with pytest.raises(ValidationError, match="platform_id"):
        load_settings(None, gb28181={"platform_id": "123"})
