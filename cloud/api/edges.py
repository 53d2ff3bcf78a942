"""Edges and people: the edge list with what each edge reports, and token management for admins."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from cloud.auth import Admin, Viewer
from cloud.context import Ctx
from cloud.identities import SelfDemotion, add_edge, add_user, revoke, rotate, set_role
from shared.frame import DEVICE_ID_PATTERN

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["edges and users"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no token, or an unknown or revoked one"},
    403: {"description": "the token's role may not do this"},
}
Name = Annotated[str, Path(pattern=DEVICE_ID_PATTERN)]


class EdgeOut(BaseModel):
    name: str
    created_at: float
    revoked: bool
    last_seen: float | None = Field(description="last sync, epoch seconds")
    last_seq: int | None
    queue_depth: int | None = Field(description="frames waiting on the edge, as it reported")
    lag_s: float | None = Field(description="age of the oldest frame queued on the edge, as it reported")
    drops: dict[str, int]
    quarantined: int | None
    sources: dict[str, str]
    frames_stored: int
    duplicates: int
    rejected: int
    clock_skew_s: float | None = Field(
        description="the edge's clock minus the cloud's when its last batch arrived, s (positive: ahead)")


class NewEdge(BaseModel):
    name: str = Field(pattern=DEVICE_ID_PATTERN)


class NewUser(BaseModel):
    name: str = Field(pattern=DEVICE_ID_PATTERN)
    role: Literal["admin", "operator", "viewer"]


class NewRole(BaseModel):
    role: Literal["admin", "operator", "viewer"]


class Token(BaseModel):
    name: str
    token: str = Field(description="shown once; keep it secret")


class UserOut(BaseModel):
    name: str
    role: str
    created_at: float
    revoked: bool


@router.get("/edges", response_model=list[EdgeOut], responses=_ERRORS)
async def list_edges(_: Viewer, ctx: Ctx) -> list[EdgeOut]:
    """Every registered edge: last sync, its queue depth, drops and lag as it reported them, and its clock skew."""
    return [EdgeOut(name=e.name, created_at=e.created_at / 1e6, revoked=e.revoked,
                    last_seen=None if e.last_seen is None else e.last_seen / 1e6, last_seq=e.last_seq,
                    queue_depth=e.queue_depth, lag_s=e.oldest_age_s, drops=e.drops, quarantined=e.quarantined,
                    sources=e.sources, frames_stored=e.frames_stored, duplicates=e.duplicates, rejected=e.rejected,
                    clock_skew_s=e.clock_skew_s)
            for e in await ctx.storage.edges()]


@router.post("/edges", response_model=Token, status_code=201, responses={**_ERRORS, 409: {"description": "exists"}})
async def create_edge(body: NewEdge, _: Admin, ctx: Ctx) -> Token:
    """Register an edge and return its token (once)."""
    return Token(name=body.name, token=await add_edge(ctx.storage, body.name))


@router.post("/edges/{name}/token", response_model=Token, responses={**_ERRORS, 404: {"description": "unknown"}})
async def rotate_edge_token(name: Name, _: Admin, ctx: Ctx) -> Token:
    """Issue a new token for an edge; the old one stops working."""
    token = await rotate(ctx.storage, "edge", name)
    ctx.auth.forget()
    return Token(name=name, token=token)


@router.delete("/edges/{name}/token", status_code=204, responses={**_ERRORS, 404: {"description": "unknown"}})
async def revoke_edge(name: Name, _: Admin, ctx: Ctx) -> None:
    """Revoke an edge's token: its next batch is refused with 401."""
    await revoke(ctx.storage, "edge", name)
    ctx.auth.forget()


@router.get("/users", response_model=list[UserOut], responses=_ERRORS)
async def list_users(_: Admin, ctx: Ctx) -> list[UserOut]:
    return [UserOut(name=u["name"], role=u["role"], created_at=u["created_at"] / 1e6,
                    revoked=u["revoked_at"] is not None) for u in await ctx.storage.identities("user")]


@router.post("/users", response_model=Token, status_code=201, responses={**_ERRORS, 409: {"description": "exists"}})
async def create_user(body: NewUser, _: Admin, ctx: Ctx) -> Token:
    """Add a person with a role and return their token (once)."""
    return Token(name=body.name, token=await add_user(ctx.storage, body.name, body.role))


@router.delete("/users/{name}/token", status_code=204, responses={**_ERRORS, 404: {"description": "unknown"}})
async def revoke_user(name: Name, _: Admin, ctx: Ctx) -> None:
    await revoke(ctx.storage, "user", name)
    ctx.auth.forget()


@router.post("/users/{name}/token", response_model=Token, responses={**_ERRORS, 404: {"description": "unknown"}})
async def rotate_user_token(name: Name, _: Admin, ctx: Ctx) -> Token:
    """Issue a new token for a person (shown once); the old one, and every session it opened, stop working."""
    token = await rotate(ctx.storage, "user", name)
    ctx.auth.forget()
    return Token(name=name, token=token)


@router.put("/users/{name}/role", response_model=UserOut, responses={
    **_ERRORS, 404: {"description": "unknown"}, 409: {"description": "an admin changing their own role"}})
async def change_role(name: Name, body: NewRole, who: Admin, ctx: Ctx) -> UserOut:
    """Give a person another role; their token and console sessions carry it from the next request."""
    if name == who.name and who.kind == "user" and body.role != "admin":
        raise SelfDemotion(f"{name} cannot take the admin role from themselves; ask another admin")
    await set_role(ctx.storage, name, body.role)
    ctx.auth.forget()
    return next(u for u in await list_users(who, ctx) if u.name == name)
