"""Devices and the edge each belongs to: the list for viewers, binding and moving for admins, and the moves made.

Only the edge a device belongs to may write it (see cloud/devices.py). An
admin binds a device before it first sends with ``POST /devices`` and moves
it with ``PUT /devices/{name}/edge``; ``GET /devices/{name}/moves`` shows who
did either, when, and why.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from cloud.auth import Admin, Viewer
from cloud.context import Ctx
from cloud.devices import MAX_REASON, add_device, move_device
from cloud.storage.base import DeviceMove
from shared.frame import DEVICE_ID_PATTERN

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no token, or an unknown or revoked one"},
    403: {"description": "the token's role may not do this"},
}
_UNKNOWN: dict[int | str, dict[str, Any]] = {404: {"description": "unknown device or edge"}}
Name = Annotated[str, Path(pattern=DEVICE_ID_PATTERN)]
Reason = Annotated[str, Field(max_length=MAX_REASON, description="why, for the record (one line)")]


class DeviceOut(BaseModel):
    name: str
    edge: str | None = Field(description="the edge whose frames of this device are stored; "
                                         "null until an edge first sends it")
    last_seen: float | None = Field(description="timestamp of its newest frame, epoch seconds")
    last_edge: str | None = Field(description="the edge that sent its newest frame")


class NewDevice(BaseModel):
    name: str = Field(pattern=DEVICE_ID_PATTERN)
    edge: str = Field(pattern=DEVICE_ID_PATTERN)
    reason: Reason = ""


class MoveTo(BaseModel):
    edge: str = Field(pattern=DEVICE_ID_PATTERN)
    reason: Reason = ""


class MoveOut(BaseModel):
    device: str
    from_edge: str | None = Field(description="null: bound before it first sent")
    to_edge: str
    by: str = Field(description="the admin who did it")
    at: float = Field(description="epoch seconds")
    reason: str


def _move_out(move: DeviceMove) -> MoveOut:
    return MoveOut(device=move.device, from_edge=move.from_edge, to_edge=move.to_edge, by=move.by,
                   at=move.at / 1e6, reason=move.reason)


@router.get("", response_model=list[DeviceOut], responses=_ERRORS)
async def list_devices(_: Viewer, ctx: Ctx) -> list[DeviceOut]:
    """Every device with the edge it belongs to, bound ones that have not sent yet included."""
    return [DeviceOut(name=d.name, edge=d.owner, last_seen=None if d.last_ts is None else d.last_ts / 1e6,
                      last_edge=d.last_edge) for d in await ctx.storage.device_records()]


@router.post("", response_model=DeviceOut, status_code=201,
             responses={**_ERRORS, **_UNKNOWN, 409: {"description": "the device is known already: move it"}})
async def create_device(body: NewDevice, admin: Admin, ctx: Ctx) -> DeviceOut:
    """Bind a device that has not sent yet to an edge, so that no other edge can claim it."""
    await add_device(ctx.storage, body.name, body.edge, admin.name, body.reason)
    return DeviceOut(name=body.name, edge=body.edge, last_seen=None, last_edge=None)


@router.put("/{name}/edge", response_model=DeviceOut, responses={**_ERRORS, **_UNKNOWN})
async def move(name: Name, body: MoveTo, admin: Admin, ctx: Ctx) -> DeviceOut:
    """Move a device to another edge: from now on only that edge's frames of it are stored.

    The move is recorded (see ``/moves``); nothing changes when it belongs to that edge already.
    """
    await move_device(ctx.storage, name, body.edge, admin.name, body.reason)
    row = await ctx.storage.device(name)
    last_ts, last_edge = (row[1], row[3]) if row else (None, None)
    return DeviceOut(name=name, edge=body.edge, last_seen=None if last_ts is None else last_ts / 1e6,
                     last_edge=last_edge)


@router.get("/{name}/moves", response_model=list[MoveOut], responses={**_ERRORS, **_UNKNOWN})
async def moves(name: Name, _: Viewer, ctx: Ctx,
                limit: Annotated[int, Query(ge=1, le=1000, description="the newest this many")] = 100) -> list[MoveOut]:
    """Who bound or moved a device to which edge, when and why; oldest first."""
    return [_move_out(m) for m in await ctx.storage.device_moves(name, limit)]
