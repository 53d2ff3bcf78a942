"""Where uploaded assemblies live: in memory (loaded, with cached collision structures) and on disk.

An upload is validated completely before it is stored. With a directory, the
raw JSON (meshes inline) is written as ``<id>.json`` so a restarted service
finds it again; memory holds at most ``max_loaded`` loaded assemblies (least
recently used are dropped and reloaded from disk on demand).
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from cloud.physics.assembly import Assembly, AssemblySpec, load_assembly, parse_assembly
from cloud.physics.errors import AssemblyNotFoundError, MeshTooLargeError
from cloud.physics.interference import CollisionWorld
from cloud.physics.mesh import MeshLimits

__all__ = ["PhysicsStore", "StoredAssembly"]

_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(eq=False)
class StoredAssembly:
    id: str
    assembly: Assembly
    _world: CollisionWorld | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def world(self) -> CollisionWorld:
        """Collision structures, built on first use and kept."""
        with self._lock:
            if self._world is None:
                self._world = CollisionWorld(self.assembly.parts)
            return self._world


class PhysicsStore:
    """Assembly storage with a byte limit per upload and an LRU of loaded assemblies."""

    def __init__(self, root: Path | str | None = None, *, max_upload_bytes: int = 64 * 1024 * 1024,
                 max_loaded: int = 32, limits: MeshLimits | None = None) -> None:
        self.root = Path(root) if root is not None else None
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
        self.max_upload_bytes = max_upload_bytes
        self.max_loaded = max_loaded
        self.limits = limits or MeshLimits(max_bytes=max_upload_bytes)
        self._loaded: OrderedDict[str, StoredAssembly] = OrderedDict()
        self._raw: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, upload: bytes | AssemblySpec) -> StoredAssembly:
        """Validate and store an upload (assembly JSON with inline meshes); returns it with its id."""
        if isinstance(upload, AssemblySpec):
            spec, raw = upload, upload.model_dump_json(exclude_none=True).encode()
        else:
            spec, raw = None, upload
        if len(raw) > self.max_upload_bytes:
            raise MeshTooLargeError(
                f"upload is {len(raw):,} bytes; the limit is {self.max_upload_bytes:,} bytes")
        assembly = load_assembly(spec or parse_assembly(raw), None, self.limits)
        entry = StoredAssembly(uuid.uuid4().hex, assembly)
        if self.root is not None:
            tmp = self.root / f".{entry.id}.tmp"
            tmp.write_bytes(raw)
            os.replace(tmp, self.root / f"{entry.id}.json")
        else:
            self._raw[entry.id] = raw
        self._remember(entry)
        return entry

    def get(self, assembly_id: str) -> StoredAssembly:
        with self._lock:
            entry = self._loaded.get(assembly_id)
            if entry is not None:
                self._loaded.move_to_end(assembly_id)
                return entry
        path = self.root / f"{assembly_id}.json" if self.root and _ID.match(assembly_id) else None
        if path is None or not path.is_file():
            raise AssemblyNotFoundError(f"no assembly with id {assembly_id!r}")
        entry = StoredAssembly(assembly_id, load_assembly(parse_assembly(path.read_bytes()), None,
                                                          self.limits))
        self._remember(entry)
        return entry

    def _remember(self, entry: StoredAssembly) -> None:
        with self._lock:
            self._loaded[entry.id] = entry
            while len(self._loaded) > self.max_loaded:
                dropped, _ = self._loaded.popitem(last=False)
                if self.root is None:
                    self._raw.pop(dropped, None)  # memory-only: an evicted upload is gone
