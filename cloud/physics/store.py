"""Where uploaded assemblies live: in the database, with the loaded ones cached in memory.

An upload is validated completely before it is stored. The database keeps it
as it was sent (the assembly JSON, meshes inline; table ``assemblies``), so
every process and replica serving that database finds every upload; memory
holds at most ``max_loaded`` loaded assemblies with their collision structures
(least recently used are dropped and loaded again from the database on
demand). Uploads never change after they are stored, so a cached one is never
stale.

The physics routes run in FastAPI's worker threads, and so do ``put`` and
``get``: they reach the database through the event loop the app runs on
(``bind``), and must not be called on that loop.

Checks may move parts for one request (``StoredAssembly.posed``). A loaded
assembly has one set of collision structures, shared by the requests on it,
so a posed check holds the assembly's check lock from moving the parts to
putting them back, and every other check on that assembly waits for it (a
check takes milliseconds): no request sees another's poses.

Every request has a time and a memory budget (``time_budget_s``,
``memory_budget_mb``; see ``cloud.physics.budget``); the memory budget is
checked here: before an upload's meshes are parsed (from the triangles each
states or its size bounds), after they are (from their counts), and before
collision structures are built.

An id is answered 404 only when the database has no such upload: the LRU
only drops loaded copies, which are loaded again, and uploads are never
deleted. The 404 says so, and names a malformed id as malformed.

``physics.store_dir``, where uploads used to be kept as files, is read once
at start: the uploads in it that the database lacks are copied in, with
their ids, and a warning says the setting can go.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from cloud.migrations.v0009_assembly_parts import count_parts
from cloud.physics.assembly import (
    Assembly,
    AssemblySpec,
    InlineMesh,
    inline_triangles,
    load_assembly,
    parse_assembly,
)
from cloud.physics.budget import check_memory, check_triangles
from cloud.physics.errors import AssemblyError, AssemblyNotFoundError, MeshTooLargeError, Problem
from cloud.physics.interference import CollisionWorld
from cloud.physics.mesh import MeshLimits
from cloud.physics.pair_result import PairResult
from cloud.storage.base import AssemblyRecord, AssemblySummary, Storage, StorageUnavailable

__all__ = ["MAX_STORED_BYTES", "PhysicsStore", "StoredAssembly"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_STORED_BYTES = 1_000_000_000  # the largest value SQLite and PostgreSQL keep in one field
DATABASE_WAIT = 120.0  # seconds a worker thread waits for the database before answering 503


@dataclass(eq=False)
class StoredAssembly:
    id: str
    assembly: Assembly
    memory_budget_mb: float | None = None
    _world: CollisionWorld | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _check: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def world(self) -> CollisionWorld:
        """Collision structures, built on first use (within the memory budget) and kept."""
        with self._lock:
            if self._world is None:
                check_memory(_counts(self.assembly), self.memory_budget_mb, "checking this assembly")
                self._world = CollisionWorld(self.assembly.parts)
            return self._world

    @contextmanager
    def posed(self, poses: dict[str, np.ndarray] | None) -> Iterator[tuple[Assembly, CollisionWorld]]:
        """The assembly and its collision structures with ``poses`` (part name → 4×4, metres) for
        this block only; the check lock is held throughout, so concurrent requests never mix poses."""
        world = self.world
        with self._check:
            if not poses:
                yield self.assembly, world
                return
            unknown = sorted(set(poses) - set(world.names))
            if unknown:
                raise AssemblyError([Problem(f"poses.{n}", f"no part named {n!r} in this assembly")
                                     for n in unknown])
            asm = self.assembly.with_poses(poses)
            stored = world.poses.copy()
            world.set_poses(np.stack([p.pose for p in asm.parts]))
            try:
                yield asm, world
            finally:
                world.set_poses(stored)


    def check(self, tolerance_m: float) -> list[PairResult]:
        """The collision check at the stored poses, under the check lock (see ``posed``)."""
        with self.posed(None) as (_, world):
            return world.check(tolerance_m)


def _counts(asm: Assembly) -> list[tuple[int, int]]:
    """(faces, vertices) of each distinct mesh (parts that share a mesh share its structures)."""
    meshes = {id(p.mesh): p.mesh for p in asm.parts}
    return [(len(m.faces), len(m.vertices)) for m in meshes.values()]


class PhysicsStore:
    """Assemblies in the database behind an LRU of loaded ones, with a byte limit per upload."""

    def __init__(self, *, max_upload_bytes: int = 64 * 1024 * 1024, max_loaded: int = 32,
                 limits: MeshLimits | None = None, time_budget_s: float | None = None,
                 memory_budget_mb: float | None = None) -> None:
        self.max_upload_bytes = min(max_upload_bytes, MAX_STORED_BYTES)
        self.max_loaded = max_loaded
        self.time_budget_s = time_budget_s
        self.memory_budget_mb = memory_budget_mb
        self.limits = limits or MeshLimits(max_bytes=self.max_upload_bytes)
        self._loaded: OrderedDict[str, StoredAssembly] = OrderedDict()
        self._lock = threading.Lock()
        self._storage: Storage | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def bind(self, storage: Storage, legacy_dir: Path | None = None) -> None:
        """Use ``storage`` (open) from now on, reached through the running loop; copy in ``legacy_dir``."""
        self._storage, self._loop = storage, asyncio.get_running_loop()
        if legacy_dir is not None:
            await self._import(storage, legacy_dir)

    def put(self, upload: bytes | AssemblySpec) -> StoredAssembly:
        """Validate and store an upload (assembly JSON with inline meshes); returns it with its id."""
        if isinstance(upload, AssemblySpec):
            spec, raw = upload, upload.model_dump_json(exclude_none=True).encode()
        else:
            spec, raw = None, upload
        if len(raw) > self.max_upload_bytes:
            raise MeshTooLargeError(
                f"upload is {len(raw):,} bytes; the limit is {self.max_upload_bytes:,} bytes")
        spec = spec or parse_assembly(raw)
        self._check_before_loading(spec)
        assembly = load_assembly(spec, None, self.limits)
        check_memory(_counts(assembly), self.memory_budget_mb, "this assembly")
        entry = StoredAssembly(uuid.uuid4().hex, assembly, self.memory_budget_mb)
        record = AssemblyRecord(entry.id, assembly.spec.name, hashlib.sha256(raw).hexdigest(), len(raw),
                                time.time_ns() // 1000, raw, len(assembly.parts))
        self._wait(lambda db: db.put_assembly(record))
        self._remember(entry)
        return entry

    def get(self, assembly_id: str) -> StoredAssembly:
        with self._lock:
            entry = self._loaded.get(assembly_id)
            if entry is not None:
                self._loaded.move_to_end(assembly_id)
                return entry
        if not _ID.match(assembly_id):
            raise AssemblyNotFoundError(f"no assembly with id {assembly_id!r}: an assembly id is the 32 "
                                        f"hexadecimal digits POST /assemblies answered")
        record = self._wait(lambda db: db.assembly(assembly_id))
        if record is None:
            raise AssemblyNotFoundError(
                f"no assembly with id {assembly_id!r} in this service's database: uploads are never "
                f"removed, so it was uploaded to another database (or the database was replaced)")
        spec = parse_assembly(record.body)
        self._check_before_loading(spec)
        entry = StoredAssembly(assembly_id, load_assembly(spec, None, self.limits), self.memory_budget_mb)
        self._remember(entry)
        return entry

    def listing(self, limit: int, before: tuple[int, str] | None = None) -> list[AssemblySummary]:
        """Uploads newest first, without their bodies (for the list of assemblies)."""
        return self._wait(lambda db: db.assemblies(limit, before))

    def _check_before_loading(self, spec: AssemblySpec) -> None:
        """The memory budget against the triangles each inline mesh states (or its size bounds), before any
        mesh is parsed. A count over the face limit is left to the loader, which answers 413."""
        found = []
        for i, part in enumerate(spec.parts):
            if not isinstance(part.mesh, InlineMesh):
                continue
            estimate = inline_triangles(part.mesh)
            if estimate is None or (estimate.exact and estimate.triangles > self.limits.max_faces):
                continue
            found.append((f"parts[{i}].mesh", part.name, min(estimate.triangles, self.limits.max_faces)))
        check_triangles(found, self.memory_budget_mb)

    def _wait(self, call: Callable[[Storage], Coroutine[Any, Any, T]]) -> T:
        """Run a storage call on the app's loop and wait for it here, in a worker thread."""
        storage, loop = self._storage, self._loop
        if storage is None or loop is None:
            raise StorageUnavailable("the physics store has no database yet (the service is starting)")
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            raise RuntimeError("PhysicsStore.put/get wait for the database: call them in a worker thread")
        future = asyncio.run_coroutine_threadsafe(call(storage), loop)
        try:
            return future.result(DATABASE_WAIT)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise StorageUnavailable(f"the database did not answer within {DATABASE_WAIT:.0f} s") from None

    def _remember(self, entry: StoredAssembly) -> None:
        with self._lock:
            self._loaded[entry.id] = entry
            while len(self._loaded) > self.max_loaded:
                self._loaded.popitem(last=False)

    @staticmethod
    async def _import(storage: Storage, directory: Path) -> None:
        files = await asyncio.to_thread(lambda: sorted(directory.glob("*.json")) if directory.is_dir() else [])
        have = set(await storage.assembly_ids())
        copied = 0
        for path in files:
            if not _ID.match(path.stem) or path.stem in have:
                continue
            try:
                raw, mtime = await asyncio.to_thread(_read, path)
                name = str(json.loads(raw).get("name", "assembly"))
            except (OSError, ValueError, AttributeError) as exc:
                log.warning("physics.store_dir: %s is not a readable upload (%s); left out", path, exc)
                continue
            await storage.put_assembly(AssemblyRecord(path.stem, name, hashlib.sha256(raw).hexdigest(), len(raw),
                                                      int(mtime * 1_000_000), raw, count_parts(raw)))
            copied += 1
        log.warning("physics.store_dir (%s) is no longer used: uploads are kept in the database%s; "
                    "remove the setting", directory,
                    f", where its {copied} upload(s) were copied now" if copied else "")


def _read(path: Path) -> tuple[bytes, float]:
    return path.read_bytes(), path.stat().st_mtime
