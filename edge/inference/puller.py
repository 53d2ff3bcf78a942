"""The model downloader: polls the cloud for this edge's model assignments and fetches the packages they name.

Every ``inference.poll_interval`` it asks ``GET /api/v1/edges/{edge_id}/models``
with the uplink's client (URL, token, CA, timeout: ``edge.uplink.sender.cloud_client``).
A package not yet in ``models_dir`` (``<sha256>.twinmodel``) is streamed from
``GET /api/v1/models/{name}/versions/{version}/package`` into a temporary file,
at most the assignment's ``size`` and never more than 64 MiB, its sha256
computed on the way; only a complete file with the right hash is fsynced and
renamed into place. A refused download (an HTTP error, a truncated or oversized
body, a wrong hash) is logged with its reason and tried again at the next poll;
the engine is not told, and the rule it replaces keeps serving.

The engine then gets the rules with their files (``set_assignments``). The list
last given to it is kept in ``models_dir/assignments.json``, so that a restart
without the cloud serves the same models. Package files that neither that list
nor the one before it names are deleted (the one before stays for a rollback).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

import httpx
from pydantic import ValidationError

from edge.config import UplinkConfig
from edge.inference.engine import LocalAssignment
from edge.uplink.sender import cloud_client
from shared.errors import TwinedgeError

if TYPE_CHECKING:
    # Imported where used: shared.modelpackage brings numpy, which an edge without models never loads.
    from shared.modelpackage import ModelAssignment

__all__ = ["AssignmentTaker", "DownloadRefused", "ModelPuller"]

log = logging.getLogger(__name__)

STATE_FILE = "assignments.json"
SUFFIX = ".twinmodel"
_PACKAGE_NAME = re.compile(r"^[0-9a-f]{64}\.twinmodel$")
_WRITE_CHUNK = 1024 * 1024  # bytes gathered before one write (off the event loop)


class AssignmentTaker(Protocol):
    """What the downloader hands its rules to (the inference engine)."""

    async def set_assignments(self, assignments: Sequence[LocalAssignment]) -> None: ...


class DownloadRefused(TwinedgeError):
    """A package download that cannot be used: an HTTP error, a truncated or oversized body, a wrong hash."""


def _key(a: ModelAssignment) -> tuple[str, str | None]:
    return a.scope, a.target


def _describe(a: ModelAssignment) -> str:
    where = "the fleet" if a.scope == "fleet" else f"{a.scope} {a.target}"
    return f"model {a.model} version {a.version} for {where}"


class ModelPuller:
    """One task: ``run()``. ``poll_once`` is one round (what the task does every ``poll_interval``)."""

    def __init__(self, uplink: UplinkConfig, engine: AssignmentTaker, *, edge_id: str, models_dir: Path,
                 poll_interval: float, keep: Sequence[Path] = (),
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.uplink = uplink
        self.engine = engine
        self.edge_id = edge_id
        self.models_dir = models_dir
        self.poll_interval = poll_interval
        self.keep = {p.resolve() for p in keep}  # packages the config names (local models): never deleted
        self.transport = transport
        self.current: list[ModelAssignment] = []  # the rules the engine serves
        self.previous: list[ModelAssignment] = []  # the ones before: their files stay for a rollback
        self.last_poll: float | None = None
        self.last_error: str | None = None
        self._cloud_down = False
        self._refused: dict[str, str] = {}  # sha256 -> the reason its last download was refused

    def path_of(self, a: ModelAssignment) -> Path:
        return self.models_dir / f"{a.sha256}{SUFFIX}"

    # --- the task --------------------------------------------------------------

    async def run(self) -> None:
        await self.restore()
        async with cloud_client(self.uplink, self.transport) as client:
            while True:
                await self.poll_once(client)
                await asyncio.sleep(self.poll_interval)

    async def restore(self) -> None:
        """Give the engine the rules kept from the last run (those whose files are still here)."""
        await asyncio.to_thread(self.models_dir.mkdir, mode=0o750, parents=True, exist_ok=True)
        current, previous = await asyncio.to_thread(self._read_state)
        present = [a for a in current if self.path_of(a).is_file()]
        if len(present) < len(current):
            log.warning("%d of the %d model packages kept in %s are missing; their devices are not scored until "
                        "the cloud is reached", len(current) - len(present), len(current), self.models_dir)
        self.current, self.previous = present, previous
        if present:
            log.info("serving %d model assignments kept from the last run until the cloud answers", len(present))
            await self.engine.set_assignments([LocalAssignment(a, self.path_of(a)) for a in present])

    async def poll_once(self, client: httpx.AsyncClient) -> None:
        """Ask for the rules, download what is missing, and hand the engine what changed."""
        wanted = await self._assignments(client)
        self.last_poll = time.time()
        if wanted is None:
            return
        before = {_key(a): a for a in self.current}
        chosen: list[ModelAssignment] = []
        for a in wanted:
            if await self._fetch(client, a):
                chosen.append(a)
            elif (kept := before.get(_key(a))) is not None:
                chosen.append(kept)  # the package refused: the rule it replaces keeps serving
        if chosen == self.current:
            await asyncio.to_thread(self._prune)
            return
        await self.engine.set_assignments([LocalAssignment(a, self.path_of(a)) for a in chosen])
        self.previous, self.current = self.current, chosen
        log.info("model assignments changed: %s", "; ".join(_describe(a) for a in chosen) or "none")
        await asyncio.to_thread(self._save_state)
        await asyncio.to_thread(self._prune)

    def snapshot(self) -> dict[str, Any]:
        return {"last_poll": self.last_poll, "last_error": self.last_error, "assignments": len(self.current),
                "refused_packages": dict(self._refused)}

    # --- the list ----------------------------------------------------------------

    async def _assignments(self, client: httpx.AsyncClient) -> list[ModelAssignment] | None:
        """The cloud's rules for this edge, or None (logged) when it cannot say."""
        path = f"/api/v1/edges/{urllib.parse.quote(self.edge_id, safe='')}/models"
        try:
            response = await client.get(path)
        except httpx.TransportError as exc:
            self._unreachable(f"cannot reach the cloud at {self.uplink.shown_url} ({type(exc).__name__})")
            return None
        if response.status_code != 200:
            self._unreachable(f"the cloud answered the model list with {_reason(response)}")
            return None
        try:
            data = json.loads(response.content)
            if data == {"assignments": []}:
                found: list[ModelAssignment] = []
            else:
                from shared.modelpackage import AssignmentList

                found = AssignmentList.model_validate(data).assignments
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            self._unreachable(f"the cloud's model list is unreadable ({exc.error_count()} problems; first: "
                              f"{where}: {first['msg']})")
            return None
        except ValueError as exc:
            self._unreachable(f"the cloud's model list is not JSON: {exc}")
            return None
        if self._cloud_down:
            log.info("the model list is readable again")
        self._cloud_down, self.last_error = False, None
        return found

    def _unreachable(self, reason: str) -> None:
        self.last_error = reason
        level = logging.DEBUG if self._cloud_down else logging.WARNING
        log.log(level, "%s; the models in use keep serving, asking again in %.0f s", reason, self.poll_interval)
        self._cloud_down = True

    # --- one package -------------------------------------------------------------

    async def _fetch(self, client: httpx.AsyncClient, a: ModelAssignment) -> bool:
        """Is the package of ``a`` here (downloaded now if need be)? A refusal is logged, never raised."""
        if self.path_of(a).is_file():
            return True
        try:
            await self.download(client, a)
        except DownloadRefused as exc:
            reason = str(exc)
            level = logging.DEBUG if self._refused.get(a.sha256) == reason else logging.WARNING
            log.log(level, "the package of %s was refused: %s; the model in use keeps serving, trying again in "
                    "%.0f s", _describe(a), reason, self.poll_interval)
            self._refused[a.sha256] = reason
            return False
        except httpx.TransportError as exc:
            self.last_error = f"the download of {_describe(a)} broke off ({type(exc).__name__}: {exc})"
            log.warning("%s; the model in use keeps serving, trying again in %.0f s", self.last_error,
                        self.poll_interval)
            return False
        except OSError as exc:
            self.last_error = f"cannot write the package of {_describe(a)} into {self.models_dir}: " \
                              f"{exc.strerror or exc}"
            log.warning("%s; trying again in %.0f s", self.last_error, self.poll_interval)
            return False
        if self._refused.pop(a.sha256, None) is not None:
            log.info("the package of %s downloaded after all", _describe(a))
        return True

    async def download(self, client: httpx.AsyncClient, a: ModelAssignment) -> Path:
        """Stream the package of ``a`` into ``models_dir``, checked on the way; DownloadRefused if unusable."""
        from shared.modelpackage import MAX_PACKAGE

        if a.size > MAX_PACKAGE:
            raise DownloadRefused(f"it is {a.size:,} bytes, over the {MAX_PACKAGE:,}-byte limit of a package")
        url = (f"/api/v1/models/{urllib.parse.quote(a.model, safe='')}/versions/{a.version}/package")
        final = self.path_of(a)
        part = self.models_dir / f".{a.sha256}.part"
        digest = hashlib.sha256()
        size = 0
        await asyncio.to_thread(self.models_dir.mkdir, mode=0o750, parents=True, exist_ok=True)
        out = await asyncio.to_thread(part.open, "wb")
        try:
            async with client.stream("GET", url) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise DownloadRefused(_reason(response))
                buffer = bytearray()
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > a.size:
                        raise DownloadRefused(f"the cloud sent more than the {a.size:,} bytes the assignment names")
                    buffer += chunk
                    if len(buffer) >= _WRITE_CHUNK:
                        await asyncio.to_thread(_write, out, digest, bytes(buffer))
                        buffer.clear()
                await asyncio.to_thread(_write, out, digest, bytes(buffer))
            if size < a.size:
                raise DownloadRefused(f"truncated: {size:,} of {a.size:,} bytes arrived")
            if digest.hexdigest() != a.sha256:
                raise DownloadRefused(f"its sha256 is {digest.hexdigest()}, not {a.sha256} as assigned")
            await asyncio.to_thread(_commit, out, part, final)
        except BaseException:
            await asyncio.to_thread(_discard, out, part)
            raise
        log.info("downloaded the package of %s (%s bytes, sha256 verified)", _describe(a), f"{size:,}")
        return final

    # --- what is kept on disk ----------------------------------------------------

    def _read_state(self) -> tuple[list[ModelAssignment], list[ModelAssignment]]:
        path = self.models_dir / STATE_FILE
        if not path.exists():
            return [], []
        from shared.modelpackage import ModelAssignment

        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return ([ModelAssignment.model_validate(a) for a in data["assignments"]],
                    [ModelAssignment.model_validate(a) for a in data.get("previous", [])])
        except FileNotFoundError:
            return [], []
        except (OSError, ValueError, KeyError, TypeError, ValidationError) as exc:
            log.warning("cannot read the kept model assignments %s (%s); waiting for the cloud's list", path,
                        str(exc).splitlines()[0])
            return [], []

    def _save_state(self) -> None:
        path = self.models_dir / STATE_FILE
        body = json.dumps({"assignments": [a.model_dump(mode="json") for a in self.current],
                           "previous": [a.model_dump(mode="json") for a in self.previous]}, indent=1)
        tmp = path.with_name(f".{STATE_FILE}.tmp")
        try:
            with tmp.open("w", encoding="utf-8") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            tmp.replace(path)
            _sync_dir(path.parent)
        except OSError as exc:
            log.warning("cannot keep the model assignments in %s: %s; a restart without the cloud will not score "
                        "until the cloud answers", path, exc.strerror or exc)

    def _prune(self) -> None:
        """Delete packages that neither the current nor the previous rules name (and leftover partial files)."""
        named = {self.path_of(a).name for a in (*self.current, *self.previous)}
        try:
            entries = list(self.models_dir.iterdir())
        except OSError:
            return
        for entry in entries:
            stale = (_PACKAGE_NAME.match(entry.name) and entry.name not in named
                     and entry.resolve() not in self.keep) or entry.name.endswith(".part")
            if stale:
                with contextlib.suppress(OSError):
                    entry.unlink()
                    log.info("deleted the model package %s (no longer assigned)", entry.name)


def _reason(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", "")
    except (ValueError, AttributeError):
        detail = ""
    if isinstance(detail, list):
        detail = "; ".join(str(d.get("message", d)) if isinstance(d, dict) else str(d) for d in detail)
    text = str(detail or response.reason_phrase)[:300]
    return f"HTTP {response.status_code}: {text}"


def _write(out: BinaryIO, digest: Any, data: bytes) -> None:
    digest.update(data)
    out.write(data)


def _commit(out: BinaryIO, part: Path, final: Path) -> None:
    out.flush()
    os.fsync(out.fileno())
    out.close()
    part.replace(final)
    _sync_dir(final.parent)


def _discard(out: BinaryIO, part: Path) -> None:
    out.close()
    with contextlib.suppress(OSError):
        part.unlink()


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
