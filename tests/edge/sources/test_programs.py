"""The program harvester against real folders, with a fake sink at our own seam (FrameSink)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from edge.sources import SOURCES
from edge.sources.programs.config import ProgramsSourceConfig
from edge.sources.programs.source import ProgramsSource

PROGRAM = "%\nO100 (PLATE)\nT1 M6 (T1 D=10. FLAT END MILL)\nG0 X0 Y0 Z5\nG1 Z-1 F100\nX50\nM30\n%\n"


class FakeSink:
    """Records every put; positions are kept as a store would (committed with the documents)."""

    edge_id = "edge-1"

    def __init__(self) -> None:
        self.puts: list[dict[str, Any]] = []
        self.positions: dict[str, str] = {}

    async def put(self, frames: Sequence[Any], *, durable: bool = False, events: Sequence[Any] = (),
                  documents: Sequence[Any] = (), position: Any = None) -> None:
        assert durable or position is None
        self.puts.append({"documents": list(documents), "events": list(events)})
        if position is not None:
            self.positions[position.key] = position.value

    async def reject(self, origin: str, reason: str, payload: bytes | None = None) -> None:
        raise AssertionError("not used")

    async def position(self, key: str) -> str | None:
        return self.positions.get(key)

    def documents(self) -> list[Any]:
        return [d for p in self.puts for d in p["documents"]]

    def events(self, kind: str | None = None) -> list[Any]:
        return [e for p in self.puts for e in p["events"] if kind is None or e.kind == kind]


def config(tmp_path: Path, **kw: Any) -> ProgramsSourceConfig:
    return ProgramsSourceConfig.model_validate({
        "kind": "programs", "name": "progs", "device_id": "vmc-2", "settle_time": "0s", "max_file_size": "64KiB",
        "folders": [{"name": "cam", "path": str(tmp_path)}], **kw})


def test_registered_as_a_source_kind() -> None:
    assert SOURCES["programs"].load() is ProgramsSource


async def test_new_program_is_reported_once_and_not_after_a_restart(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "plate.nc").write_text(PROGRAM)
    (tmp_path / "notes.txt").write_text("not a program")
    sink = FakeSink()
    source = ProgramsSource(config(tmp_path), sink)
    await source.scan_once()
    await source.scan_once()
    docs = sink.documents()
    assert len(docs) == 1
    doc = docs[0]
    assert doc.kind == "program" and doc.device == "vmc-2" and doc.key == doc.body["sha256"]
    assert doc.body["path"] == "sub/plate.nc" and doc.body["folder"] == "cam"
    assert doc.body["number"] == "O100" and doc.body["tools"][0]["diameter_mm"] == 10.0
    assert [e.kind for e in sink.events()] == ["program_harvested"]
    restarted = ProgramsSource(config(tmp_path), sink)  # a new daemon: what it knows comes from the positions
    await restarted.scan_once()
    assert len(sink.documents()) == 1


async def test_edit_rename_and_removal(tmp_path: Path) -> None:
    path = tmp_path / "a.nc"
    path.write_text(PROGRAM)
    sink = FakeSink()
    source = ProgramsSource(config(tmp_path), sink)
    await source.scan_once()
    path.write_text(PROGRAM.replace("X50", "X60"))
    os.utime(path, ns=(1, 10**18))
    await source.scan_once()
    assert len(sink.documents()) == 2
    assert sink.documents()[1].body["feed_mm"] == pytest.approx(6.0 + 60.0)
    path.rename(tmp_path / "b.nc")
    await source.scan_once()
    renamed = sink.documents()[2]
    assert renamed.body["path"] == "b.nc" and renamed.body["renamed_from"] == "a.nc"
    (tmp_path / "b.nc").unlink()
    await source.scan_once()
    removed = [e for e in sink.events("program_harvested") if e.details.get("action") == "removed"]
    assert len(removed) == 1 and removed[0].details["path"] == "b.nc"
    assert len(sink.documents()) == 3


async def test_bad_files_are_reported_and_never_stop_the_harvester(tmp_path: Path) -> None:
    (tmp_path / "huge.nc").write_bytes(b"G1 X1\n" * 20_000)
    (tmp_path / "binary.nc").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "broken.nc").write_text("G1 X1 F10\nG2 X50 Y0 R1\nM98 P9999\nM30\n")
    (tmp_path / "good.nc").write_text(PROGRAM)
    locked = tmp_path / "locked.nc"
    locked.write_text(PROGRAM + "(locked)\n")
    locked.chmod(0)
    sink = FakeSink()
    source = ProgramsSource(config(tmp_path), sink)
    await source.scan_once()
    await source.scan_once()
    invalid = {e.details["path"]: e for e in sink.events("program_invalid")}
    assert set(invalid) >= {"huge.nc", "binary.nc", "broken.nc"}
    assert all(e.level == "operator" for e in invalid.values())
    assert "larger than" in invalid["huge.nc"].message
    assert "line 2" in invalid["broken.nc"].message
    paths = sorted(d.body["path"] for d in sink.documents())
    assert "good.nc" in paths and "broken.nc" in paths and "huge.nc" not in paths
    assert len(sink.events("program_invalid")) == len(invalid)  # the second scan repeats nothing


async def test_a_file_is_read_only_once_it_settled(tmp_path: Path) -> None:
    path = tmp_path / "copying.nc"
    path.write_text(PROGRAM)
    sink = FakeSink()
    source = ProgramsSource(config(tmp_path, settle_time="1h"), sink)
    await source.scan_once()
    await source.scan_once()
    assert sink.documents() == []  # its mtime is younger than the settle time


async def test_unreachable_folder_degrades_and_keeps_what_it_knew(tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    (share / "a.nc").write_text(PROGRAM)
    sink = FakeSink()
    cfg = ProgramsSourceConfig.model_validate({"kind": "programs", "name": "p", "settle_time": "0s",
                                               "folders": [{"name": "share", "path": str(share)}]})
    source = ProgramsSource(cfg, sink)
    await source.scan_once()
    share.rename(tmp_path / "gone")
    problems = await source.scan_once()
    assert problems and "not there" in problems[0]
    assert sink.events("program_harvested")[-1].details["action"] == "harvested"  # no removal noted
    (tmp_path / "gone").rename(share)
    await source.scan_once()
    assert len(sink.documents()) == 1


async def test_run_scans_until_cancelled(tmp_path: Path) -> None:
    (tmp_path / "a.nc").write_text(PROGRAM)
    sink = FakeSink()
    source = ProgramsSource(config(tmp_path, scan_interval="50ms"), sink)
    async with asyncio.timeout(10):
        task = asyncio.create_task(source.run())
        async with source.scanned:
            await source.scanned.wait_for(lambda: source.scans >= 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(sink.documents()) == 1
    assert source.health.state.value == "connected"


def test_config_rejects_relative_folders_and_bad_extensions(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="absolute"):
        ProgramsSourceConfig.model_validate({"kind": "programs", "name": "p", "folders": [
            {"name": "a", "path": "relative/dir"}]})
    cfg = config(tmp_path, extensions=["NC", ".EIA"])
    assert cfg.extensions == [".eia", ".nc"]


async def test_changes_while_the_daemon_was_down_are_reported_at_start(tmp_path: Path) -> None:
    (tmp_path / "keep.nc").write_text(PROGRAM)
    (tmp_path / "gone.nc").write_text(PROGRAM.replace("X50", "X70"))
    sink = FakeSink()
    await ProgramsSource(config(tmp_path), sink).scan_once()
    (tmp_path / "gone.nc").unlink()
    (tmp_path / "new.nc").write_text(PROGRAM.replace("X50", "X80"))
    await ProgramsSource(config(tmp_path), sink).scan_once()
    assert [d.body["path"] for d in sink.documents()][2:] == ["new.nc"]
    removed = [e.details["path"] for e in sink.events("program_harvested") if e.details["action"] == "removed"]
    assert removed == ["gone.nc"]


async def test_parsing_runs_off_the_event_loop(tmp_path: Path) -> None:
    (tmp_path / "long.nc").write_text("".join(f"G1 X{i % 97} Y{i % 89} F500\n" for i in range(150_000)))
    sink = FakeSink()
    source = ProgramsSource(config(tmp_path, max_file_size="16MiB"), sink)
    ticks = 0
    scan = asyncio.create_task(source.scan_once())
    while not scan.done():  # the loop keeps turning while the file is read and interpreted
        ticks += 1
        await asyncio.sleep(0.001)
    await scan
    assert len(sink.documents()) == 1 and sink.documents()[0].body["lines"] == 150_000
    assert ticks > 1


async def test_a_record_too_large_for_one_document_is_trimmed(tmp_path: Path) -> None:
    tools = "".join(f"T{t} M6 ({'X' * 200})\n" + "".join(f"G1 X{i} F{100 + i}\n" for i in range(60))
                    for t in range(1, 1000))
    (tmp_path / "many.nc").write_text(tools + "M30\n")
    sink = FakeSink()
    await ProgramsSource(config(tmp_path, max_file_size="16MiB"), sink).scan_once()
    body = sink.documents()[0].body
    assert len(json.dumps(body)) <= 256 * 1024
    assert body["tools"] and body["tools"][0]["tool"] == 1


async def test_tool_diameters_from_the_config_serve_cutter_compensation(tmp_path: Path) -> None:
    # a 50 mm square inside with G41 and a 10 mm tool: LinuxCNC's rs274 makes 202.888 mm of it (the entry move
    # reverses, so a half circle of the tool radius goes round that corner; the square's sides shrink by 2 r)
    (tmp_path / "pocket.nc").write_text("T1 M6\nG0 X10 Y0\nG1 Z-1 F100\nG41 D1 G1 X0 Y0\nX50\nY50\nX0\nY0\n"
                                        "G40 G1 X10 Y0\nM30\n")
    plain, sized = FakeSink(), FakeSink()
    await ProgramsSource(config(tmp_path), plain).scan_once()
    await ProgramsSource(config(tmp_path, tool_diameters={"1": 10.0}), sized).scan_once()
    without, with_table = plain.documents()[0].body, sized.documents()[0].body
    assert any("unknown diameter" in d["message"] for d in without["diagnostics"])
    assert not any("unknown diameter" in d["message"] for d in with_table["diagnostics"])
    assert without["feed_mm"] == pytest.approx(1 + 10 + 4 * 50 + 10)
    assert with_table["feed_mm"] == pytest.approx(202.888, abs=0.001)


async def test_an_empty_mount_point_at_start_is_not_a_mass_deletion(tmp_path: Path) -> None:
    # a share that did not mount at boot leaves its (empty) mount point: an unreachable folder, not 3 deletions
    for i in range(3):
        (tmp_path / f"p{i}.nc").write_text(PROGRAM.replace("O100", f"O{100 + i}"))
    sink = FakeSink()
    await ProgramsSource(config(tmp_path), sink).scan_once()
    for i in range(3):
        (tmp_path / f"p{i}.nc").unlink()
    source = ProgramsSource(config(tmp_path), sink)  # restarted: what it knows comes from the positions
    problems = await source.scan_once()
    assert sink.events("program_harvested")[3:] == []
    assert problems and "empty" in problems[0]
    (tmp_path / "p0.nc").write_text(PROGRAM.replace("O100", "O100"))  # mounted again: p1 and p2 really went
    assert await source.scan_once() == []
    assert sorted(e.details["path"] for e in sink.events("program_harvested")[3:]) == ["p1.nc", "p2.nc"]


async def test_an_unreadable_subfolder_is_not_a_deletion(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every folder")
    (tmp_path / "op1").mkdir()
    (tmp_path / "op1" / "a.nc").write_text(PROGRAM)
    (tmp_path / "b.nc").write_text(PROGRAM.replace("O100", "O200"))
    sink = FakeSink()
    source = ProgramsSource(config(tmp_path), sink)
    await source.scan_once()
    (tmp_path / "op1").chmod(0)
    try:
        problems = await source.scan_once()
    finally:
        (tmp_path / "op1").chmod(0o755)
    assert [e.details["action"] for e in sink.events("program_harvested")] == ["harvested", "harvested"]
    assert problems and "op1" in problems[0]


async def test_more_files_than_max_files_removes_nothing(tmp_path: Path) -> None:
    for i in range(4):
        (tmp_path / f"p{i}.nc").write_text(PROGRAM.replace("O100", f"O{100 + i}"))
    sink = FakeSink()
    source = ProgramsSource(config(tmp_path, max_files=4), sink)
    await source.scan_once()
    for i in range(4, 8):
        (tmp_path / f"p{i}.nc").write_text(PROGRAM.replace("O100", f"O{100 + i}"))
    problems = await source.scan_once()
    assert [e.details["action"] for e in sink.events("program_harvested")] == ["harvested"] * 4
    assert problems and "max_files" in problems[0]


async def test_a_move_by_copy_then_delete_is_a_rename(tmp_path: Path) -> None:
    # moving a file on a share copies it (the copy settles for a while) and then deletes the original
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "a.nc").write_text(PROGRAM)
    sink = FakeSink()
    await ProgramsSource(config(tmp_path), sink).scan_once()
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "a.nc").write_text(PROGRAM)
    (tmp_path / "old" / "a.nc").unlink()
    await ProgramsSource(config(tmp_path, settle_time="1h"), sink).scan_once()  # the copy has not settled yet
    assert [e.details["action"] for e in sink.events("program_harvested")] == ["harvested"]
    await ProgramsSource(config(tmp_path), sink).scan_once()  # settled
    assert [e.details["action"] for e in sink.events("program_harvested")] == ["harvested", "renamed"]
    assert sink.documents()[-1].body["renamed_from"] == "old/a.nc"
