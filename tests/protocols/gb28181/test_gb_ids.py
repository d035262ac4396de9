"""Catalog ID classes (Annex E.1 / A.2.1.2) and SIP domain derivation (6.1.2)."""

from __future__ import annotations

import pytest

from vigil.domain.errors import Invalid
from vigil.protocols.gb28181.ids import IdKind, classify_id, region_level, sip_domain


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("34", IdKind.REGION),
        ("3402", IdKind.REGION),
        ("340200", IdKind.REGION),
        ("34020000", IdKind.REGION),
        ("34020000001110000001", IdKind.DEVICE),  # DVR
        ("34020000001180000001", IdKind.DEVICE),  # NVR
        ("34020000001300000001", IdKind.DEVICE),  # 130 HVR
        ("34020000001310000001", IdKind.CHANNEL),  # camera
        ("34020000001320000001", IdKind.CHANNEL),  # IPC
        ("34020000001370000001", IdKind.CHANNEL),  # voice output
        ("34020000002000000001", IdKind.PLATFORM),
        ("34020000002010000001", IdKind.PLATFORM_SERVER),
        ("34020000002150000001", IdKind.BUSINESS_GROUP),
        ("34020000002160000001", IdKind.VIRTUAL_ORGANIZATION),
        ("34020000003000000001", IdKind.USER),
        ("34020000005000000001", IdKind.EXTERNAL),
        ("34020000006000000001", IdKind.EXTENSION),
    ],
)
def test_classify(value: str, kind: IdKind) -> None:
    assert classify_id(value) is kind


@pytest.mark.parametrize("value", ["", "3", "340", "3402000000", "3402000000132000000", "3402000000132000000A"])
def test_classify_rejects_other_lengths(value: str) -> None:
    with pytest.raises(Invalid):
        classify_id(value)


def test_classify_rejects_unassigned_type() -> None:
    with pytest.raises(Invalid, match="type code"):
        classify_id("34020000000990000001")


def test_region_level() -> None:
    assert [region_level(c) for c in ("34", "3402", "340201", "34020101")] == [1, 2, 3, 4]
    with pytest.raises(Invalid):
        region_level("340")


def test_sip_domain_from_id_and_domain_forms() -> None:
    assert sip_domain("34020000002000000001") == "3402000000"
    assert sip_domain("4101050000") == "4101050000"
    assert sip_domain("4101050000.spvmn.cn") == "4101050000"
    with pytest.raises(Invalid):
        sip_domain("example.com")
