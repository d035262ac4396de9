"""GB/T 28181 control and reports: PTZ on a camera, device alarms (list, reset) and mobile positions.

Every route checks the camera scope first (outside scope looks absent and the denial is audited).
Alarms and positions of a camera follow that camera's region; a device's own alarms (no camera has
its ID) are visible to node-wide users only. PTZ commands and alarm resets are audited whatever
their outcome, with the device's SIP answer.
"""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import func, select
from starlette.requests import Request

from vigil.access.scope import in_scope_clause
from vigil.api.context import ApiContext, Authed, Ctx
from vigil.api.contracts import Principal
from vigil.api.errors import ERROR_RESPONSES
from vigil.domain.errors import Conflict, NotFound
from vigil.gb28181.control import PRESET_ACTIONS, VALUE_ACTIONS, ControlAnswer, ControlError, PtzAction, ptz_instruction
from vigil.gb28181.report_store import ALARM_METHODS
from vigil.pipeline import GB28181_SOURCE_KIND
from vigil.protocols.gb28181.errors import PtzError
from vigil.protocols.gb28181.ptz import PtzCmd, PtzInstruction
from vigil.storage.db import Database
from vigil.storage.models import Camera, GbAlarm, GbPosition

__all__ = ["Controller", "build_gb_control_router"]

RTSP_PTZ_MESSAGE = "PTZ needs a GB/T 28181 channel (ONVIF not yet supported)"


class Controller(Protocol):
    """The device control runtime (``vigil.gb28181.control.GbControl``), as the API uses it."""

    async def ptz(self, channel_id: str, instruction: PtzInstruction) -> ControlAnswer: ...

    async def reset_alarm(
        self, device_id: str, target_id: str, *, alarm_method: int | None = None, alarm_type: int | None = None
    ) -> ControlAnswer: ...


class PtzIn(BaseModel):
    """One PTZ command: a move is sent on press and ``stop`` on release."""

    model_config = ConfigDict(extra="forbid")
    action: PtzAction
    speed: int = Field(128, ge=1, le=255, description="Pan/tilt/focus/iris speed; zoom uses it scaled to 1-15.")
    preset: int | None = Field(
        None,
        ge=1,
        le=255,
        description="Preset number, for preset-set/-call/-delete and cruise-add-point (cruise-delete-point: "
        "that point; none = the whole cruise).",
    )
    group: int = Field(1, ge=0, le=255, description="Cruise or scan group, for the cruise-* and scan-* actions.")
    value: int | None = Field(
        None, ge=0, le=4095, description="cruise-speed / scan-speed: the speed; cruise-dwell: seconds at each point."
    )

    @model_validator(mode="after")
    def _preset_when_needed(self) -> PtzIn:
        if self.action in PRESET_ACTIONS and self.preset is None:
            raise ValueError(f"preset is required for {self.action.value}")
        if self.action in VALUE_ACTIONS and self.value is None:
            raise ValueError(f"value is required for {self.action.value}")
        return self


class PtzOut(BaseModel):
    """What the device answered to the PTZ command (PTZ has no MANSCDP Response: the SIP answer is all)."""

    model_config = ConfigDict(extra="forbid")
    camera_id: int
    channel_id: str
    device_id: str
    action: PtzAction
    #: The 16 hex digits sent in ``<PTZCmd>``.
    ptz_cmd: str
    accepted: bool
    status: int
    reason: str


class GbAlarmOut(BaseModel):
    """One device alarm as the device reported it (priority 1 highest … 4)."""

    model_config = ConfigDict(extra="forbid")
    id: int
    device_id: str
    source_id: str
    camera_id: int | None
    priority: int
    method: int
    method_name: str
    alarm_type: int | None
    event_type: int | None
    description: str
    alarm_us: int
    received_us: int
    longitude: float | None
    latitude: float | None
    reset_us: int | None
    reset_by: str


class GbAlarmPage(BaseModel):
    """A page of alarms, newest first, and how many match in all."""

    model_config = ConfigDict(extra="forbid")
    total: int
    items: list[GbAlarmOut]


class AlarmResetOut(BaseModel):
    """The device's answer to ResetAlarm; the alarm is marked reset when it accepted."""

    model_config = ConfigDict(extra="forbid")
    alarm: GbAlarmOut
    accepted: bool
    status: int
    reason: str


class GbPositionOut(BaseModel):
    """One reported position (WGS-84); speed km/h, direction degrees from north, altitude/height metres."""

    model_config = ConfigDict(extra="forbid")
    at_us: int
    received_us: int
    longitude: float
    latitude: float
    speed: float | None
    direction: float | None
    altitude: float | None
    height: float | None


class GbPositionsOut(BaseModel):
    """A camera's latest position and its recent history, newest first."""

    model_config = ConfigDict(extra="forbid")
    camera_id: int
    source_id: str
    latest: GbPositionOut | None
    history: list[GbPositionOut]


def _alarm_out(row: GbAlarm) -> GbAlarmOut:
    return GbAlarmOut(
        id=row.id,
        device_id=row.device_id,
        source_id=row.source_id,
        camera_id=row.camera_id,
        priority=row.priority,
        method=row.method,
        method_name=ALARM_METHODS.get(row.method, "unknown"),
        alarm_type=row.alarm_type,
        event_type=row.event_type,
        description=row.description,
        alarm_us=row.alarm_us,
        received_us=row.received_us,
        longitude=row.longitude,
        latitude=row.latitude,
        reset_us=row.reset_us,
        reset_by=row.reset_by,
    )


def _position_out(row: GbPosition) -> GbPositionOut:
    return GbPositionOut(
        at_us=row.at_us,
        received_us=row.received_us,
        longitude=row.longitude,
        latitude=row.latitude,
        speed=row.speed,
        direction=row.direction,
        altitude=row.altitude,
        height=row.height,
    )


def _answer_text(answer: ControlAnswer) -> str:
    return f"device {answer.device_id} answered {answer.status} {answer.reason}".strip()


def build_gb_control_router(db: Database, control: Controller | None = None) -> APIRouter:
    """``POST /api/cameras/{id}/ptz``, ``GET /api/gb/alarms``, ``POST /api/gb/alarms/{id}/reset``,
    ``GET /api/gb/positions``. ``control`` is None when GB/T 28181 is disabled: commands answer 409."""
    router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)

    @router.post("/cameras/{camera_id}/ptz", response_model=PtzOut, tags=["cameras"])
    async def camera_ptz(camera_id: int, body: PtzIn, principal: Authed, ctx: Ctx) -> PtzOut:
        """Move, zoom, focus, iris, presets, cruise or scan (operators and admins); audited with the answer."""
        gate = ctx.access.gate
        what = f"action={body.action.value} speed={body.speed}"
        if body.preset is not None:
            what += f" preset={body.preset}"
        if body.action.value.startswith(("cruise", "scan")):
            what += f" group={body.group}"
        if body.value is not None:
            what += f" value={body.value}"
        target = await gate.authorize(principal, camera_id, "ptz", what, audit_allowed=False)
        async with db.session() as session:
            cam = await session.get(Camera, camera_id)
        if cam is None:
            raise NotFound(f"camera {camera_id} not found")
        if cam.source_kind != GB28181_SOURCE_KIND:
            await gate.audit(principal, "ptz", target, False, f"{what}: not a GB/T 28181 channel")
            raise Conflict(RTSP_PTZ_MESSAGE)
        if control is None:
            await gate.audit(principal, "ptz", target, False, f"{what}: GB/T 28181 disabled")
            raise Conflict("GB/T 28181 is not enabled on this node")
        try:
            instruction = ptz_instruction(
                body.action, speed=body.speed, preset=body.preset, group=body.group, value=body.value
            )
            cmd = PtzCmd(instruction).to_hex()
        except (ValueError, PtzError) as exc:  # the model's bounds make this unreachable; kept as a guard
            raise Conflict(f"cannot encode {what}: {exc}") from exc
        try:
            answer = await control.ptz(cam.gb_id, instruction)
        except ControlError as exc:
            await gate.audit(principal, "ptz", target, False, f"{what} PTZCmd={cmd}: {exc}"[:500])
            raise Conflict(str(exc)) from exc
        await gate.audit(principal, "ptz", target, answer.accepted, f"{what} PTZCmd={cmd}: {_answer_text(answer)}")
        return PtzOut(
            camera_id=camera_id,
            channel_id=cam.gb_id,
            device_id=answer.device_id,
            action=body.action,
            ptz_cmd=cmd,
            accepted=answer.accepted,
            status=answer.status,
            reason=answer.reason,
        )

    @router.get("/gb/alarms", response_model=GbAlarmPage, tags=["gb28181"])
    async def list_gb_alarms(
        principal: Authed,
        ctx: Ctx,
        camera_id: Annotated[int | None, Query(description="Only this camera's alarms")] = None,
        from_us: Annotated[int, Query(ge=0, description="Received at or after")] = 0,
        to_us: Annotated[int | None, Query(ge=0, description="Received before")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> GbAlarmPage:
        """Device alarms in the caller's scope, newest first (received time)."""
        query = select(GbAlarm).where(GbAlarm.received_us >= from_us)
        if to_us is not None:
            query = query.where(GbAlarm.received_us < to_us)
        if camera_id is not None:
            await ctx.access.gate.authorize(principal, camera_id, "view", audit_allowed=False)
            query = query.where(GbAlarm.camera_id == camera_id)
        elif principal.region_code is not None:
            in_scope = select(Camera.id).where(in_scope_clause(Camera.region_code, principal.region_code))
            query = query.where(GbAlarm.camera_id.in_(in_scope))
        async with db.session() as session:
            total = await session.scalar(select(func.count()).select_from(query.subquery()))
            page = query.order_by(GbAlarm.received_us.desc(), GbAlarm.id.desc()).limit(limit).offset(offset)
            rows = (await session.scalars(page)).all()
        return GbAlarmPage(total=int(total or 0), items=[_alarm_out(row) for row in rows])

    @router.post("/gb/alarms/{alarm_id}/reset", response_model=AlarmResetOut, tags=["gb28181"])
    async def reset_gb_alarm(alarm_id: int, principal: Authed, ctx: Ctx) -> AlarmResetOut:
        """Send ResetAlarm (AlarmCmd) to the device (operators and admins): a device alarm (method 2) is
        raised again only after its reset (STD22 A.2.5.3)."""
        gate = ctx.access.gate
        async with db.session() as session:
            row = await session.get(GbAlarm, alarm_id)
        target = f"gb:{row.source_id}" if row is not None else f"gb_alarm#{alarm_id}"
        await _authorize_alarm(ctx, principal, row, alarm_id, target)
        assert row is not None
        if control is None:
            await gate.audit(principal, "gb_alarm.reset", target, False, "GB/T 28181 disabled")
            raise Conflict("GB/T 28181 is not enabled on this node")
        try:
            answer = await control.reset_alarm(
                row.device_id, row.source_id, alarm_method=row.method, alarm_type=row.alarm_type
            )
        except ControlError as exc:
            await gate.audit(principal, "gb_alarm.reset", target, False, f"alarm {alarm_id}: {exc}"[:500])
            raise Conflict(str(exc)) from exc
        async with db.session() as session:
            current = await session.get(GbAlarm, alarm_id)
            if current is None:
                raise NotFound(f"alarm {alarm_id} not found")
            if answer.accepted:
                current.reset_us, current.reset_by = ctx.access.clock(), principal.username
            out = _alarm_out(current)
        await gate.audit(
            principal, "gb_alarm.reset", target, answer.accepted, f"alarm {alarm_id}: {_answer_text(answer)}"
        )
        return AlarmResetOut(alarm=out, accepted=answer.accepted, status=answer.status, reason=answer.reason)

    @router.get("/gb/positions", response_model=GbPositionsOut, tags=["gb28181"])
    async def camera_positions(
        request: Request,
        ctx: Ctx,
        camera_id: Annotated[int, Query(description="The camera (a mobile GB/T 28181 channel)")],
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> GbPositionsOut:
        """The positions a camera's device reported, newest first (its latest also moved the camera)."""
        await ctx.access.gate(request, camera_id, "view")
        async with db.session() as session:
            cam = await session.get(Camera, camera_id)
            if cam is None:
                raise NotFound(f"camera {camera_id} not found")
            query = (
                select(GbPosition)
                .where(GbPosition.source_id == cam.gb_id)
                .order_by(GbPosition.at_us.desc(), GbPosition.id.desc())
                .limit(limit)
            )
            rows = [_position_out(row) for row in await session.scalars(query)]
        return GbPositionsOut(camera_id=camera_id, source_id=cam.gb_id, latest=rows[0] if rows else None, history=rows)

    return router


async def _authorize_alarm(
    ctx: ApiContext, principal: Principal, row: GbAlarm | None, alarm_id: int, target: str
) -> None:
    """Scope then role, like a camera: an alarm outside scope (or a device alarm for a scoped user) is absent."""
    gate = ctx.access.gate
    if row is None:
        await gate.audit(principal, "gb_alarm.reset", target, False, "no such alarm")
        raise NotFound(f"alarm {alarm_id} not found")
    if row.camera_id is not None:
        await gate.authorize(principal, row.camera_id, "alarm", f"reset alarm {alarm_id}", audit_allowed=False)
        return
    if principal.region_code is not None:
        why = f"device alarm outside scope {principal.region_code}"
        await gate.audit(principal, "gb_alarm.reset", target, False, why)
        raise NotFound(f"alarm {alarm_id} not found")
    await gate.require_role(principal, "alarm", "gb_alarm.reset", target)
