import pytest

from vigil.domain.errors import Invalid
from vigil.domain.ids import CAMERA_TYPES, is_region_code, parse_gb_id, region_parent


def test_parse_valid_camera_id() -> None:
    gid = parse_gb_id("34020000001320000001", allowed_types=CAMERA_TYPES)
    assert gid.centre == "34020000"
    assert gid.industry == "00"
    assert gid.type_code == 132
    assert gid.network == 0
    assert gid.serial == "000001"
    assert gid.domain == "3402000000"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("3402000000132000000", "exactly 20 digits"),
        ("3402000000132000000a", "exactly 20 digits"),
        ("00020000001320000001", "province"),
        ("34020000000990000001", "type code"),
    ],
)
def test_parse_rejects_with_reason(value: str, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        parse_gb_id(value)


def test_camera_type_required() -> None:
    with pytest.raises(Invalid, match="not a camera type"):
        parse_gb_id("34020000002000000001", allowed_types=CAMERA_TYPES)


def test_region_codes() -> None:
    assert is_region_code("32") and is_region_code("320102") and not is_region_code("3201020")
    assert region_parent("32010203") == "320102"
    assert region_parent("32") is None
    with pytest.raises(Invalid):
        region_parent("abc")
