"""The composition root starts the registrar (with its SIP server and catalog sync) only when gb28181.enabled."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import sqlite_database
from vigil.access import build_access
from vigil.app import build_gb28181
from vigil.settings import Settings


async def test_registrar_is_built_only_when_enabled(tmp_path: Path) -> None:
    db = await sqlite_database(tmp_path)
    try:
        off = Settings(data_dir=tmp_path)
        assert build_gb28181(off, db, build_access(db, off)) is None
        on = Settings(data_dir=tmp_path, gb28181={"enabled": True, "host": "127.0.0.1", "port": 0})
        built = build_gb28181(on, db, build_access(db, on))
        assert built is not None
        registrar, sip, catalog = built.registrar, built.sip, built.catalog
        await catalog.start()
        await registrar.start()
        await sip.start()
        try:
            assert sip.udp_port > 0 and sip.tcp_port > 0
        finally:
            await sip.close()
            await registrar.close()
            await catalog.close()
    finally:
        await db.close()
