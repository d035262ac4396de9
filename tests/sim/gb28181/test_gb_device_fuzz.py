"""Hypothesis fuzz of the simulated device's handling of incoming bytes: documented errors only, never a crash."""

from __future__ import annotations

import random

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from tests.sim.gb28181.platform import DOMAIN, PLATFORM_ID, TinyPlatform

from vigil.protocols.gb28181.manscdp import CatalogQuery, DeviceInfoQuery, DeviceStatusQuery
from vigil.protocols.sip.message import SipError
from vigil.sim.gb28181.device import DeviceConfig, GbDevice, device_id

DEVICE = device_id(DOMAIN, 1)
PLATFORM_ADDR = ("127.0.0.1", 5060)
_PLATFORM = TinyPlatform(password="secret")
#: Real messages a platform sends a device: the seeds mutated below.
SEEDS = [
    _PLATFORM.query(DEVICE, CatalogQuery),
    _PLATFORM.query(DEVICE, DeviceInfoQuery),
    _PLATFORM.query(DEVICE, DeviceStatusQuery),
    _PLATFORM.subscribe(DEVICE),
    _PLATFORM.subscribe(DEVICE, to_tag="t", cseq=2, expires=0),
    b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;rport;branch=z9hG4bK1\r\n"
    b"From: <sip:" + DEVICE.encode() + b"@3402000000>;tag=1\r\nTo: <sip:" + DEVICE.encode() + b"@3402000000>\r\n"
    b"Call-ID: x@127.0.0.1\r\nCSeq: 1 REGISTER\r\n"
    b'WWW-Authenticate: Digest realm="3402000000", nonce="abc", qop="auth"\r\nContent-Length: 0\r\n\r\n',
]


def registered_device(transport: str = "UDP") -> GbDevice:
    config = DeviceConfig(
        device_id=DEVICE,
        password="secret",
        platform_id=PLATFORM_ID,
        domain=DOMAIN,
        platform_address=PLATFORM_ADDR,
        local_address=("127.0.0.1", 5062),
        transport=transport,
        channels=3,
    )
    device = GbDevice(config, random_bytes=random.Random(3).randbytes)
    device.start(0.0)
    return device


def exercise(device: GbDevice) -> None:
    """Everything the runner does after feeding bytes must also hold up."""
    device.datagrams_to_send(1.0)
    while device.next_event() is not None:
        pass
    when = device.get_timer()
    if when is not None:
        device.handle_timer(when)
        device.datagrams_to_send(when)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["flip", "insert", "delete"]))
        if op == "flip" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[pos : pos + draw(st.integers(1, 16))]
    return bytes(data)


@given(st.one_of(mutated(), st.binary(max_size=512)))
@example(SEEDS[0].replace(b"<CmdType>Catalog", b"<CmdType>Catalog<!DOCTYPE"))
@example(SEEDS[1].replace(b"CSeq: 1 MESSAGE", b"CSeq: 1 INVITE"))
@example(SEEDS[3].replace(b"Expires: 600", b"Expires: soon"))
def test_datagrams_never_raise(data: bytes) -> None:
    device = registered_device()
    device.receive_datagram(data, PLATFORM_ADDR, 0.5)
    exercise(device)


@given(st.lists(st.one_of(mutated(), st.binary(max_size=128)), max_size=4))
def test_stream_bytes_raise_only_sip_error(chunks: list[bytes]) -> None:
    device = registered_device("TCP")
    for chunk in chunks:
        try:
            device.receive_data(chunk, 0.5)
        except SipError:
            break
    exercise(device)


@pytest.mark.parametrize("seed", SEEDS)
def test_seeds_are_answered(seed: bytes) -> None:
    device = registered_device()
    device.receive_datagram(seed, PLATFORM_ADDR, 0.5)
    assert device.stats.bad_messages == 0
