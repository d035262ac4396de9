"""The simulator runner over real UDP/TCP sockets on port 0, against the in-test platform."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.helpers import eventually
from tests.sim.gb28181.platform import DOMAIN, PLATFORM_ID, TcpPlatform, TinyPlatform, UdpPlatform

from vigil.protocols.gb28181.manscdp import AlarmNotify, CatalogQuery, DeviceInfoQuery
from vigil.sim.gb28181.device import DeviceState
from vigil.sim.gb28181.runner import GbSimOptions, GbSimRunner, parse_hostport

WAIT_S = 10.0


async def until(predicate: Callable[[], bool]) -> None:
    await eventually(predicate, within=WAIT_S)


def options(address: tuple[str, int], **changes: object) -> GbSimOptions:
    base: dict[str, object] = {
        "platform_address": address,
        "password": "secret",
        "platform_id": PLATFORM_ID,
        "bind_host": "127.0.0.1",
        "devices": 1,
        "channels": 30,
        "page_size": 8,
    }
    base.update(changes)
    return GbSimOptions(**base)  # type: ignore[arg-type]


async def test_udp_device_registers_answers_queries_and_unregisters() -> None:
    platform = TinyPlatform(password="secret")
    udp = await UdpPlatform.open(platform)
    runner = GbSimRunner(options(udp.address))
    try:
        await runner.start()
        async with asyncio.timeout(WAIT_S):
            stats = await runner.wait_settled()
        assert stats.registered == 1 and stats.failed == 0
        [device] = runner.devices
        assert device.device_id.startswith(DOMAIN)
        udp.send_to_device(device.device_id, platform.query(device.device_id, CatalogQuery))
        udp.send_to_device(device.device_id, platform.query(device.device_id, DeviceInfoQuery))
        await until(lambda: len(platform.catalogs) == 1 and len(platform.device_infos) == 1)
        [catalog] = platform.catalogs
        assert catalog.complete and catalog.sum_num == 30 and catalog.pages == 4
        assert sorted(item.device_id for item in catalog.items) == sorted(device.channel_ids)
        assert platform.device_infos[0].channel == 30
        await until(lambda: runner.stats().queries_answered == 2)
    finally:
        await runner.close()
        udp.close()
    assert platform.unregistered == [device.device_id]
    assert device.state is DeviceState.STOPPED


async def test_udp_wrong_password_fails_with_the_reason() -> None:
    platform = TinyPlatform(password="right")
    udp = await UdpPlatform.open(platform)
    runner = GbSimRunner(options(udp.address, password="wrong", devices=3))
    try:
        await runner.start()
        async with asyncio.timeout(WAIT_S):
            stats = await runner.wait_settled()
    finally:
        await runner.close()
        udp.close()
    assert stats.failed == 3 and stats.registered == 0
    assert stats.last_failure is not None and "wrong password" in stats.last_failure
    assert all(d.failure_reason is not None and "403" in d.failure_reason for d in runner.devices)
    assert platform.bindings == {}


async def test_udp_keepalives_flow() -> None:
    platform = TinyPlatform(password="secret")
    udp = await UdpPlatform.open(platform)
    runner = GbSimRunner(options(udp.address, keepalive_s=0.05, devices=2))
    try:
        await runner.start()
        await until(lambda: len({device for device, _ in platform.keepalives}) == 2 and len(platform.keepalives) >= 6)
    finally:
        await runner.close()
        udp.close()
    assert runner.stats().keepalives_sent >= 6


async def test_tcp_device_registers_answers_catalog_and_unregisters() -> None:
    platform = TinyPlatform(password="secret")
    tcp = TcpPlatform(platform)
    await tcp.start()
    runner = GbSimRunner(options(tcp.address, transport="TCP", devices=2))
    try:
        await runner.start()
        async with asyncio.timeout(WAIT_S):
            stats = await runner.wait_settled()
        assert stats.registered == 2
        device = runner.devices[1]
        tcp.send_to_device(device.device_id, platform.query(device.device_id, CatalogQuery, transport="TCP"))
        await until(lambda: len(platform.catalogs) == 1)
        assert platform.catalogs[0].sum_num == 30 and len(platform.catalogs[0].items) == 30
    finally:
        await runner.close()
        await tcp.close()
    assert sorted(platform.unregistered) == sorted(d.device_id for d in runner.devices)


async def test_two_hundred_udp_devices_register_concurrently() -> None:
    platform = TinyPlatform(password="secret")
    udp = await UdpPlatform.open(platform)
    runner = GbSimRunner(options(udp.address, devices=200, channels=4))
    try:
        await runner.start()
        async with asyncio.timeout(30.0):
            stats = await runner.wait_settled()
        assert stats.registered == 200 and stats.failed == 0
        assert len(platform.bindings) == 200
        # One shared socket: every device advertises it, each under its own ID.
        assert len({b.address for b in platform.bindings.values()}) == 1
    finally:
        await runner.close()
        udp.close()
    assert len(platform.unregistered) == 200


def test_parse_hostport() -> None:
    assert parse_hostport("10.0.0.1:5061") == ("10.0.0.1", 5061)
    assert parse_hostport("sip.example") == ("sip.example", 5060)


async def test_alarm_every_raises_alarms_on_registered_devices() -> None:
    platform = TinyPlatform(password="secret")
    udp = await UdpPlatform.open(platform)
    runner = GbSimRunner(options(udp.address, devices=2, channels=1, alarm_every_s=0.05))
    try:
        await runner.start()
        async with asyncio.timeout(WAIT_S):
            await runner.wait_settled()
        expected = {d.channel_ids[0] for d in runner.devices}
        # In turn: each registered device raises one on its first channel.
        await until(lambda: {r.device_id for r in platform.reports if isinstance(r, AlarmNotify)} == expected)
    finally:
        await runner.close()
        udp.close()
    assert all(d.stats.alarms_sent >= 1 for d in runner.devices)
