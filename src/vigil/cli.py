"""The ``vigil`` command line: run the node, simulate cameras, verify audit logs and exports, manage users."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from vigil.settings import Settings, load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Vigil video networking platform.")
audit_app = typer.Typer(no_args_is_help=True, help="The tamper-evident audit log.")
user_app = typer.Typer(no_args_is_help=True, help="Users and passwords.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
app.add_typer(audit_app, name="audit")
app.add_typer(user_app, name="user")
app.add_typer(db_app, name="db")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML settings file (see vigil.example.yaml).")]
DataOpt = Annotated[Path | None, typer.Option("--data", help="Data directory (database, recordings, exports).")]


def _settings(config: Path | None, data: Path | None, **overrides: Any) -> Settings:
    if data is not None:
        overrides["data_dir"] = data
    return load_settings(config, **overrides)


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    for noisy in ("uvicorn.access", "aiosqlite", "sqlalchemy.engine", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command()
def run(
    config: ConfigOpt = None,
    data: DataOpt = None,
    host: Annotated[str | None, typer.Option(help="Listen address of the console/API.")] = None,
    port: Annotated[int | None, typer.Option(help="Port of the console/API.")] = None,
    sim_cameras: Annotated[int | None, typer.Option(help="Simulated cameras to start (0 = none).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Start Vigil (API, console, ingest, recording) and run until Ctrl-C."""
    from vigil.app import run_forever

    _logging(verbose)
    settings = _settings(config, data)
    if host is not None:
        settings.server.host = host
    if port is not None:
        settings.server.port = port
    if sim_cameras is not None:
        settings.sim.cameras = sim_cameras
    asyncio.run(run_forever(settings))


@app.command()
def sim(
    cameras: Annotated[int, typer.Option("--cameras", "-n", help="How many cameras (or GB/T 28181 devices).")] = 4,
    file: Annotated[
        list[Path] | None,
        typer.Option("--file", "-f", help="Video file(s) to loop (MP4/MKV); GB/T 28181 devices stream the one given."),
    ] = None,
    host: Annotated[str, typer.Option(help="Listen address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="RTSP port.")] = 8554,
    username: Annotated[str | None, typer.Option(help="Require these credentials (Digest/Basic).")] = None,
    password: Annotated[str | None, typer.Option(help="Password for --username, or the GB devices' password.")] = None,
    gb28181: Annotated[
        str | None,
        typer.Option("--gb28181", help="Instead: simulate GB/T 28181 devices registering to this platform HOST:PORT."),
    ] = None,
    channels: Annotated[int, typer.Option(help="Channels per GB/T 28181 device.")] = 4,
    transport: Annotated[str, typer.Option(help="GB/T 28181 SIP transport: UDP or TCP.")] = "UDP",
    alarm_every: Annotated[
        float | None,
        typer.Option("--alarm-every", min=0.1, help="GB/T 28181: raise an alarm every SECONDS (devices in turn)."),
    ] = None,
    ptz_channels: Annotated[
        int, typer.Option("--ptz-channels", min=0, help="GB/T 28181: first N channels per device are PTZ domes.")
    ] = 0,
    audio: Annotated[
        str, typer.Option("--audio", help="GB/T 28181: audio beside the video: aac, g711a, g711u or none.")
    ] = "none",
    platform_id: Annotated[
        str,
        typer.Option("--platform-id", help="GB/T 28181: the platform's 20-digit SIP server ID (Vigil's default)."),
    ] = "34020000002000000001",
    domain: Annotated[
        str | None,
        typer.Option("--domain", help="GB/T 28181: the platform's SIP domain (default: first 10 digits of its ID)."),
    ] = None,
) -> None:
    """Serve N simulated RTSP cameras looping video files, or N GB/T 28181 devices (demos, tests, load tests)."""
    _logging(False)
    if audio.lower() not in ("aac", "g711a", "g711u", "none"):
        raise typer.BadParameter(f"{audio!r}: expected aac, g711a, g711u or none", param_hint="--audio")
    if gb28181 is not None:
        from vigil.sim.gb28181 import run_gb_sim

        if file is not None and len(file) > 1:
            raise typer.BadParameter("GB/T 28181 devices stream one file: give --file once", param_hint="--file")
        media = file[0] if file else None
        if media is not None and not media.is_file():
            raise typer.BadParameter(f"{media}: no such file", param_hint="--file")
        if not (len(platform_id) == 20 and platform_id.isdigit()):
            raise typer.BadParameter(f"{platform_id!r}: expected 20 digits", param_hint="--platform-id")
        if domain is not None and not (len(domain) == 10 and domain.isdigit()):
            raise typer.BadParameter(f"{domain!r}: expected 10 digits", param_hint="--domain")
        run_gb_sim(
            gb28181,
            cameras,
            channels,
            password or "",
            transport.upper(),
            platform_id=platform_id,
            domain=domain,
            alarm_every_s=alarm_every,
            ptz_channels=ptz_channels,
            audio=audio,
            media=media,
        )
        return
    from vigil.app import DEMO_MEDIA
    from vigil.sim.cli import run_sim

    run_sim(file or [DEMO_MEDIA], cameras, host, port, username, password)


@app.command("verify-export")
def verify_export(
    clip: Annotated[Path, typer.Argument(help="The exported MP4.")],
    manifest: Annotated[Path | None, typer.Argument(help="Its manifest (default: CLIP.manifest.json).")] = None,
) -> None:
    """Check an exported clip against its SHA-256 manifest."""
    from vigil.playback.export import verify_export_cli

    raise typer.Exit(verify_export_cli(clip, manifest))


@audit_app.command("verify")
def audit_verify(config: ConfigOpt = None, data: DataOpt = None) -> None:
    """Walk the audit hash chain and report the first tampered row."""
    from vigil.access.audit import audit_verify_cli

    raise typer.Exit(audit_verify_cli(_settings(config, data)))


#: The principal CLI user commands act as: someone with a shell on the node is its administrator.
def _console_principal() -> Any:
    from vigil.api.contracts import Principal

    return Principal(user_id=0, username="vigil-cli", role="admin", region_code=None, source="local shell")


def _with_access(settings: Settings, action: Any) -> int:
    """Run ``action(access)`` against the configured database; print domain errors instead of a traceback."""
    from vigil.access import build_access
    from vigil.domain.errors import VigilError
    from vigil.storage.db import Database

    async def go() -> int:
        db = Database(settings.database_url)
        try:
            await db.create_schema()
            await action(build_access(db, settings))
            return 0
        except VigilError as exc:
            typer.echo(f"error: {exc}", err=True)
            return 1
        finally:
            await db.close()

    return asyncio.run(go())


@user_app.command("add")
def user_add(
    username: str,
    role: Annotated[str, typer.Option(help="admin, operator or viewer.")] = "viewer",
    region: Annotated[str | None, typer.Option(help="Region code the user is scoped to.")] = None,
    config: ConfigOpt = None,
    data: DataOpt = None,
) -> None:
    """Create a user; the password is asked for on the terminal."""
    from vigil.access.users import NewUser

    password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)

    async def add(access: Any) -> None:
        await access.accounts.create_user(_console_principal(), NewUser(username, password, role, "", region))
        typer.echo(f"user {username} created ({role})")

    raise typer.Exit(_with_access(_settings(config, data), add))


@user_app.command("reset-password")
def user_reset(username: str, config: ConfigOpt = None, data: DataOpt = None) -> None:
    """Set a new password for a user and unlock the account."""
    from sqlalchemy import select

    from vigil.access.users import UserChanges
    from vigil.domain.errors import NotFound
    from vigil.storage.models import User

    password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)

    async def reset(access: Any) -> None:
        async with access.db.session() as session:
            user_id = await session.scalar(select(User.id).where(User.username == username))
        if user_id is None:
            raise NotFound(f"no user named {username!r}")
        await access.accounts.update_user(_console_principal(), user_id, UserChanges(password=password, unlock=True))
        typer.echo(f"password of {username} reset; account unlocked")

    raise typer.Exit(_with_access(_settings(config, data), reset))


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None, data: DataOpt = None) -> None:
    """Apply schema migrations to the configured database."""
    from vigil.storage.db import Database

    settings = _settings(config, data)
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    async def go() -> None:
        db = Database(settings.database_url)
        try:
            await db.create_schema()
        finally:
            await db.close()

    asyncio.run(go())
    typer.echo("schema is up to date")


@app.command()
def openapi(out: Annotated[Path, typer.Argument(help="Where to write the OpenAPI JSON.")]) -> None:
    """Write the API's OpenAPI schema (the console's TypeScript types are generated from it)."""
    from vigil.app import write_full_openapi

    write_full_openapi(out)


def main() -> None:
    app()
