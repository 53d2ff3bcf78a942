"""The program harvester: scans folders of CNC programs on an interval and reports each new or changed
program once, as a ``program`` document keyed by its SHA-256, with a ``program_harvested`` event (and a
``program_invalid`` one for the operator when the program has errors or cannot be read).

Polling, not inotify: change notifications do not cross CIFS or NFS mounts, where shop programs live. A file
is read once its size and mtime stayed the same for ``settle_time`` (a file still being copied is left for a
later scan); reading and interpreting run in a worker thread, so the daemon stays responsive.

What the harvester knows (path -> size, mtime, hash) is committed with the documents it covers, as the source's
positions (``programs:<name>:<shard>``, one per shard of paths so that each stays small): a restart rescans and
reports nothing that did not change. An edit reports one record; a file whose hash appeared where another path
vanished is a rename (``renamed_from``); a vanished file is noted in a ``program_harvested`` event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from typing import Any

from edge.sources.base import Backoff, FrameSink, Position, Source, SourceState
from edge.sources.programs.config import ProgramFolder, ProgramsSourceConfig
from edge.sources.programs.files import FileStat, ReadResult, read_program, scan_folder
from shared.batch import MAX_DOCUMENT_BYTES, Document, EdgeEvent
from shared.cnc import ProgramRecord

__all__ = ["SHARDS", "ProgramsSource"]

log = logging.getLogger(__name__)

SHARDS = 256  # positions per harvester: each stays far below a position's 64 KiB
MAX_POSITION = 60 * 1024
Entry = list[Any]  # [size, mtime_ns, sha256 or "", problem or ""]


class ProgramsSource(Source):
    """Harvests CNC programs from folders; ``run()`` scans until cancelled."""

    kind = "programs"
    config: ProgramsSourceConfig

    def __init__(self, config: ProgramsSourceConfig, sink: FrameSink) -> None:
        super().__init__(config, sink)
        self.edge_id = str(getattr(sink, "edge_id", None) or "edge")
        self.known: dict[str, Entry] = {}  # "folder/path" -> entry
        self.by_shard: list[dict[str, Entry]] = [{} for _ in range(SHARDS)]  # the same, split as stored
        self.pending: dict[str, tuple[int, int, float]] = {}  # key -> (size, mtime_ns, first seen monotonic)
        self.devices: dict[str, int | None] = {}  # folder name -> filesystem its files were last listed on
        self.scans = 0
        self.scanned = asyncio.Condition()
        self._loaded = False

    # --- positions --------------------------------------------------------------------------------------

    def _shard(self, key: str) -> int:
        return zlib.crc32(key.encode()) % SHARDS

    def _set(self, key: str, entry: Entry) -> None:
        self.known[key] = entry
        self.by_shard[self._shard(key)][key] = entry

    def _drop(self, key: str) -> None:
        self.known.pop(key, None)
        self.by_shard[self._shard(key)].pop(key, None)

    def _position(self, shard: int) -> Position:
        entries = dict(self.by_shard[shard])
        text = json.dumps(entries, separators=(",", ":"))
        while len(text) > MAX_POSITION and entries:
            # very long paths: what does not fit is forgotten, and read (and reported) again after a restart
            entries.pop(next(iter(entries)))
            text = json.dumps(entries, separators=(",", ":"))
            self.health.detail["forgotten"] = self.health.detail.get("forgotten", 0) + 1
        return Position(f"programs:{self.name}:{shard}", text)

    async def _load(self) -> None:
        for shard in range(SHARDS):
            text = await self.sink.position(f"programs:{self.name}:{shard}")
            if not text:
                continue
            try:
                entries = json.loads(text)
            except ValueError:
                log.warning("harvester %s: stored state %d is unreadable; its files are read again", self.name, shard)
                continue
            if isinstance(entries, dict):
                for key, entry in entries.items():
                    if isinstance(key, str) and isinstance(entry, list) and len(entry) == 4:
                        self._set(key, entry)
        self._loaded = True

    # --- the loop ---------------------------------------------------------------------------------------

    async def run(self) -> None:
        backoff = Backoff(1.0, 60.0)
        if not self._loaded:
            await self._load()
        while True:
            problems = await self.scan_once()
            if problems:
                self.health.set_state(SourceState.DEGRADED, "; ".join(problems)[:300])
            else:
                self.health.set_state(SourceState.CONNECTED)
                backoff.reset()
            await asyncio.sleep(self.config.scan_interval if not problems else min(
                self.config.scan_interval, backoff.next_delay()))

    async def scan_once(self) -> list[str]:
        """One scan of every folder: report what changed. Returns the folders' problems (unreachable, ...)."""
        if not self._loaded:
            await self._load()
        config = self.config
        problems: list[str] = []
        seen: dict[str, tuple[ProgramFolder, FileStat]] = {}
        extensions = tuple(config.extensions)
        for folder in config.folders:
            scan = await asyncio.to_thread(scan_folder, folder.path, extensions, recursive=folder.recursive,
                                           limit=config.max_files)
            prefix = folder.name + "/"
            known = {k: v for k, v in self.known.items() if k.startswith(prefix)}
            problem = scan.problem
            if problem is None and not scan.files and known and self.devices.get(folder.name) != scan.device:
                # an unmounted share leaves its empty mount point behind (on another filesystem than the files
                # were seen on, or unknown since a restart): that is not every program deleted
                problem = (f"folder {folder.path} is empty (a share not mounted?); its {len(known)} known "
                           "program(s) are kept")
            elif problem is None and scan.files:
                self.devices[folder.name] = scan.device
            if problem is not None:
                problems.append(problem)
                keep = [""]
            else:
                keep = list(scan.unread)
                if scan.unread:
                    problems.append(f"folder {folder.path}: {len(scan.unread)} subfolder(s) or file(s) cannot be "
                                    f"read ({', '.join(scan.unread[:3])[:200]}); their programs are kept")
                if scan.truncated:
                    problems.append(f"folder {folder.path} holds more program files than max_files "
                                    f"({config.max_files:,}); the others are not harvested")
                    keep = [""]
            for stat in scan.files:
                seen[prefix + stat.path] = (folder, stat)
            # what the scan could not see stays as it was known: no removal is reported for it
            for key, old in known.items():
                rel = key[len(prefix):]
                if key not in seen and any(not k or rel == k or rel.startswith(k + "/") for k in keep):
                    seen[key] = (folder, FileStat(rel, old[0], old[1]))
        vanished = {k: v for k, v in self.known.items() if k not in seen}
        now = time.monotonic()
        for key, (folder, stat) in seen.items():
            entry = self.known.get(key)
            if entry is not None and entry[0] == stat.size and entry[1] == stat.mtime_ns:
                self.pending.pop(key, None)
                continue
            if entry is None and len(self.known) >= config.max_files:
                continue  # reported as a problem above; what is known stays within the limit
            if not self._settled(key, stat, now):
                continue
            await self._harvest(key, folder, stat, vanished)
        self.pending = {k: v for k, v in self.pending.items() if k in seen}
        # a move between folders of a share is a copy, then a delete: while a file of the same size is still
        # settling in the folder, the vanished one may be its old path (a rename once it has settled)
        settling = {(k.partition("/")[0], v[0]) for k, v in self.pending.items()}
        for key, entry in vanished.items():
            if (key.partition("/")[0], entry[0]) not in settling:
                await self._removed(key, entry)
        self.scans += 1
        self.health.record_success(0, 0)
        self.health.detail.update(files=len(self.known), scans=self.scans)
        async with self.scanned:
            self.scanned.notify_all()
        return problems

    def _settled(self, key: str, stat: FileStat, now: float) -> bool:
        settle = self.config.settle_time
        if settle <= 0:
            return True
        first = self.pending.get(key)
        if first is None or first[0] != stat.size or first[1] != stat.mtime_ns:
            self.pending[key] = (stat.size, stat.mtime_ns, now)
            return False
        return now - first[2] >= settle and time.time() - stat.mtime_ns / 1e9 >= settle

    async def _harvest(self, key: str, folder: ProgramFolder, stat: FileStat, vanished: dict[str, Entry]) -> None:
        config = self.config
        result: ReadResult = await asyncio.to_thread(
            read_program, folder.path, stat, folder=folder.name, max_size=config.max_file_size,
            profile=config.machine_profile, dialect=folder.dialect, max_blocks=config.max_blocks,
            tool_diameters=config.tool_diameters)
        old = self.known.get(key)
        self._set(key, [stat.size, stat.mtime_ns, result.sha256 or "", result.problem or ""])
        self.pending.pop(key, None)
        if old is not None and result.sha256 is not None and old[2] == result.sha256 and old[3] == (
                result.problem or ""):
            await self._put([], [], key)  # touched, not changed: only what is known moves on
            return
        if result.record is None:
            message = f"Program {key} {result.problem}: it is not harvested"
            await self._put([], [self._event("program_invalid", "operator", message, key,
                                             {"folder": folder.name, "path": stat.path, "problem": result.problem})],
                            key)
            return
        record = result.record
        renamed = next((k for k, e in vanished.items() if e[2] == result.sha256 and k.startswith(folder.name + "/")),
                       None)
        if renamed is not None:
            record = record.model_copy(update={"renamed_from": renamed.partition("/")[2]})
            del vanished[renamed]
            self._drop(renamed)
        events = [self._harvested_event(key, record)]
        errors = [d for d in record.diagnostics if d.level == "error"]
        if errors:
            first = errors[0]
            events.append(self._event(
                "program_invalid", "operator",
                f"Program {key} has {len(errors)} error(s); first on line {first.line}: {first.message}", key,
                {"folder": folder.name, "path": stat.path, "errors": len(errors), "line": first.line,
                 "sha256": record.sha256}))
        document = Document(ts=time.time(), kind="program", key=record.sha256, device=config.device_id,
                            source=self.name, body=_body(record))
        await self._put([document], events, key)
        if renamed is not None and self._shard(renamed) != self._shard(key):
            await self._put([], [], renamed)

    async def _removed(self, key: str, entry: Entry) -> None:
        self._drop(key)
        folder, _, path = key.partition("/")
        event = self._event("program_harvested", "technical", f"Program {key} was removed from its folder", key,
                            {"folder": folder, "path": path, "sha256": entry[2] or None, "action": "removed"})
        await self._put([], [event], key)

    async def _put(self, documents: list[Document], events: list[EdgeEvent], key: str) -> None:
        await self.sink.put([], durable=True, documents=documents, events=events,
                            position=self._position(self._shard(key)))

    # --- events -----------------------------------------------------------------------------------------

    def _event(self, kind: str, level: str, message: str, key: str, details: dict[str, Any]) -> EdgeEvent:
        return EdgeEvent(ts=time.time(), level=level, kind=kind, edge=self.edge_id,
                         device=self.config.device_id, source=self.name, message=message[:512],
                         details={k: (v[:1024] if isinstance(v, str) else v) for k, v in details.items()})

    def _harvested_event(self, key: str, record: ProgramRecord) -> EdgeEvent:
        action = "renamed" if record.renamed_from else "harvested"
        estimate = record.estimate.total_s if record.estimate else None
        message = (f"Program {key} {action}: {len(record.tools)} tool use(s), {record.holes} hole(s)"
                   + (f", about {estimate / 60:.1f} min" if estimate is not None else ""))
        return self._event("program_harvested", "technical", message, key, {
            "folder": record.folder, "path": record.path, "sha256": record.sha256, "action": action,
            "renamed_from": record.renamed_from, "number": record.number, "estimate_s": estimate})


def _body(record: ProgramRecord) -> dict[str, Any]:
    """The record as plain JSON, trimmed to fit a document (per-tool speed and feed lists go first)."""
    body = record.model_dump(mode="json")
    if len(json.dumps(body, separators=(",", ":"))) <= MAX_DOCUMENT_BYTES - 1024:
        return body
    for tool in body["tools"]:
        tool["spindle_rpm"], tool["feeds_mm_min"] = tool["spindle_rpm"][:5], tool["feeds_mm_min"][:5]
    body["diagnostics"] = body["diagnostics"][:50]
    while len(json.dumps(body, separators=(",", ":"))) > MAX_DOCUMENT_BYTES - 1024 and body["tools"]:
        body["tools"] = body["tools"][: len(body["tools"]) // 2]
    return body

