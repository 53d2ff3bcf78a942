"""The documents' storage contract on SQLite and PostgreSQL alike: once per (edge, seq), the newest per key with a
count of versions, programs with their renames, and the same search answers."""

from __future__ import annotations

from typing import Any

from cloud.documents import read_documents
from cloud.storage.base import Storage
from cloud.storage.programs import ProgramQuery, assets, link_candidates, program_copies, search_programs
from tests.cloud.documents import document, program, program_doc, sha, tool

DRILL = program("drill/O1001.nc", number="O1001", header=["Bracket op1"], holes=12, offsets=["G54", "G54.1 P2"],
                tools=[tool(5, "8.5MM DRILL", 8.5, "drill", holes=12), tool(7, "M10 TAP", 10.0, "tap")])
MILL = program("mill/PLATE.NC", number="O2002", tools=[tool(12, "12MM END MILL", 12.0, "end mill")],
               diagnostics=[{"line": 4, "level": "error", "message": "arc without a radius"}])


async def ingest(storage: Storage, edge: str, entries: list[dict[str, Any]]) -> None:
    docs, _ = read_documents(entries)
    await storage.ingest(edge, [], None, 0, documents=docs)


async def found(storage: Storage, **query: Any) -> list[str]:
    return [r.path for r in await search_programs(storage, ProgramQuery(**query))]


async def test_documents_programs_and_search_answer_alike_on_both_backends(storage: Storage) -> None:
    first = [program_doc(1, DRILL), program_doc(2, MILL, at=1),
             document(3, "asset", "T1", {"asset_type": "CuttingTool", "asset_id": "T1", "device_uuid": None,
                                         "timestamp": "t", "xml": "<a/>", "removed": False}, at=2)]
    await ingest(storage, "edge-1", first)
    await ingest(storage, "edge-1", first)  # the same batch again: nothing twice
    await ingest(storage, "edge-2", [program_doc(1, DRILL, at=5)])  # the same program on another edge
    moved = {**DRILL, "path": "done/O1001.nc"}
    await ingest(storage, "edge-1", [program_doc(4, moved, at=10),
                                     document(5, "asset", "T1", {"asset_type": "CuttingTool", "asset_id": "T1",
                                                                 "timestamp": "t", "xml": "<b/>", "removed": True},
                                              at=11)])
    rows = await storage.select(lambda p: (
        "SELECT edge, kind, key, seq, versions FROM documents_latest ORDER BY edge, seq", []))
    assert [tuple(r) for r in rows] == [("edge-1", "program", MILL["sha256"], 2, 1),
                                        ("edge-1", "program", DRILL["sha256"], 4, 2),
                                        ("edge-1", "asset", "T1", 5, 2),
                                        ("edge-2", "program", DRILL["sha256"], 1, 1)]
    count = await storage.select(lambda p: ("SELECT count(*) FROM documents", []))
    assert count[0][0] == 6
    copies = await program_copies(storage, DRILL["sha256"])
    assert [(c.edge, c.path) for c in copies] == [("edge-1", "done/O1001.nc"), ("edge-2", "drill/O1001.nc")]
    assert [(r["from"], r["to"]) for r in copies[0].rename_list()] == [("drill/O1001.nc", "done/O1001.nc")]
    assert await found(storage, tool="7") == ["done/O1001.nc", "drill/O1001.nc"]
    assert await found(storage, tool="TAP", edge="edge-2") == ["drill/O1001.nc"]
    assert await found(storage, diameter_mm=12.0) == ["mill/PLATE.NC"]
    assert await found(storage, offset="G54.1 P2", edge="edge-1") == ["done/O1001.nc"]
    assert await found(storage, text="BRACKET", edge="edge-1") == ["done/O1001.nc"]
    assert await found(storage, text="_") == []  # _ is a character, not a wildcard
    assert await found(storage, has_errors=True) == ["mill/PLATE.NC"]
    assert await found(storage, min_holes=10, edge="edge-2") == ["drill/O1001.nc"]
    assert await found(storage, dialect="haas") == []
    kept = await assets(storage, edge=None, device=None, asset_type=None, removed=True, limit=10, after=None)
    assert [(a.asset_id, a.xml, a.removed) for a in kept] == [("T1", "<b/>", True)]
    assert await assets(storage, edge=None, device=None, asset_type=None, removed=False, limit=10, after=None) == []


async def test_text_with_nul_characters_is_stored_on_both_backends(storage: Storage) -> None:
    # PostgreSQL's text takes no NUL character; a document carrying one (a file name, a comment, an unknown kind's
    # key) must not fail the batch, or the edge would resend it forever.
    odd = program("odd/O3\x003.nc", number="O3\x003", header=["BAD\x00COMMENT"],
                  tools=[tool(3, "6MM\x00DRILL", 6.0, "dr\x00ill")], content="odd")
    await ingest(storage, "edge-1", [program_doc(1, odd),
                                     document(2, "asset", "T\x009", {"asset_type": "CuttingTool", "asset_id": "T\x009",
                                                                     "timestamp": "t", "xml": "<a>\x00</a>"}),
                                     document(3, "newer_kind", "k\x00", {"a": "b"}, at=1)])
    assert await found(storage, text="badcomment") == ["odd/O33.nc"]
    assert await found(storage, tool="6mmdrill") == ["odd/O33.nc"]
    kept = await assets(storage, edge=None, device=None, asset_type=None, removed=False, limit=10, after=None)
    assert [(a.asset_id, a.xml) for a in kept] == [("T9", "<a></a>")]
    keys = await storage.select(lambda p: ("SELECT kind, key FROM documents ORDER BY seq", []))
    assert [tuple(r) for r in keys] == [("program", odd["sha256"]), ("asset", "T9"), ("newer_kind", "k")]


async def test_two_models_of_one_device_in_a_batch_leave_the_newer_items(storage: Storage) -> None:
    def model(units: str, keys: list[str]) -> dict[str, Any]:
        return {"uuid": "okuma-1", "name": "OKUMA", "device_id": "okuma", "instance_id": 1,
                "items": [{"id": k, "key": k, "name": None, "category": "SAMPLE", "type": "POSITION",
                           "sub_type": None, "units": units} for k in keys]}
    await ingest(storage, "edge-1", [document(1, "mtconnect_device", "okuma-1", model("INCH", ["x", "old"])),
                                     document(2, "mtconnect_device", "okuma-1", model("MILLIMETER", ["x", "y"]),
                                              at=1)])
    rows = await storage.select(lambda p: ("SELECT key, units FROM mtconnect_items ORDER BY pos", []))
    assert [tuple(r) for r in rows] == [("x", "MILLIMETER"), ("y", "MILLIMETER")]


async def test_runs_naming_thousands_of_programs_find_theirs_on_both_backends(storage: Storage) -> None:
    # A control that writes a block or a time into PROGRAM gives a run per value: the look-up of their programs
    # must not pass one SQL parameter per value (SQLite and PostgreSQL both stop at about 32,000).
    await ingest(storage, "edge-1", [program_doc(1, DRILL)])
    names = [f"o{k}.nc" for k in range(12_000)] + ["o1001.nc"]
    found = await link_candidates(storage, names, [n[:-3] for n in names], [str(k) for k in range(12_000)])
    assert [c.path for c in found] == ["drill/O1001.nc"]


async def test_tool_words_with_accents_are_found_in_any_case_on_both_backends(storage: Storage) -> None:
    # SQLite's lower() (and PostgreSQL's in the C locale) folds ASCII letters only: "FRÄSER" stayed "frÄser",
    # which no search, typed in any case, could find.
    mill = program("x/O7.nc", content="o7", tools=[tool(3, "FRÄSER Ø8", 8.0, "Fräser"), tool(4, "ÉBAUCHE", 10.0)])
    await ingest(storage, "edge-1", [program_doc(1, mill)])
    for words in ("fräser ø8", "FRÄSER", "Fräser", "ébauche", "ÉBAUCHE"):
        assert await found(storage, tool=words) == ["x/O7.nc"], words


async def test_numbers_too_large_for_a_column_make_the_document_invalid_not_the_batch(storage: Storage) -> None:
    # A whole number in a ProgramRecord had no upper bound: 2**70 lines, or a T number past 2**63, failed the
    # batch's transaction in SQLite or PostgreSQL, and the edge sent it again forever.
    huge = {**program("x/O8.nc", content="o8", tools=[tool(2**64, "DRILL")]), "lines": 2**70}
    await ingest(storage, "edge-1", [program_doc(1, huge), program_doc(2, DRILL, at=1)])
    rows = await storage.select(lambda p: ("SELECT seq, status FROM documents ORDER BY seq", []))
    assert [tuple(r) for r in rows] == [(1, "invalid"), (2, "ok")]
    assert await found(storage, tool="5") == ["drill/O1001.nc"]


async def test_retention_removes_superseded_and_refused_documents_and_keeps_every_program(storage: Storage) -> None:
    """A tool's asset changes with every part: its older versions go with the rollups' retention, as the edge
    events do. The newest version of each key stays, and so does every version of a program (a copy of the
    database rebuilds the programs from their documents)."""
    day, old, recent = 86_400_000_000, 1_700_000_000_000_000, 1_700_000_000_000_000 + 40 * 86_400_000_000

    def tool_life(seq: int, parts: int) -> dict[str, Any]:
        return document(seq, "asset", "T1", {"asset_type": "CuttingTool", "asset_id": "T1", "device_uuid": None,
                                             "timestamp": "t", "xml": f"<life>{parts}</life>", "removed": False},
                        at=seq)

    edited = {**DRILL, "sha256": sha("O1001 edited")}
    broken = {**program("x/O8.nc", content="o8"), "lines": 2**70}
    for at, entries in ((old, [tool_life(1, 1), tool_life(2, 2), program_doc(3, DRILL, at=3), program_doc(4, broken),
                               document(5, "asset", "T2", {"asset_type": "CuttingTool", "asset_id": "T2",
                                                           "timestamp": "t", "xml": "<b/>", "removed": False}, at=5)]),
                        (old + day, [program_doc(6, edited, at=6)]),
                        (recent, [tool_life(7, 3), tool_life(8, 4)])):
        docs, _ = read_documents(entries)
        await storage.put_documents("edge-1", docs, at)
    assert await storage.purge(None, old + 30 * day) == 3  # T1 versions 1 and 2, the refused program

    rows = await storage.select(lambda p: ("SELECT seq FROM documents ORDER BY seq", []))
    assert [r[0] for r in rows] == [3, 5, 6, 7, 8]  # both programs, T2's only version, T1's recent ones
    latest = await storage.select(lambda p: (
        "SELECT key, seq, versions FROM documents_latest WHERE kind = 'asset' ORDER BY key", []))
    assert [tuple(r) for r in latest] == [("T1", 8, 4), ("T2", 5, 1)]
    assert await found(storage, tool="5") == ["drill/O1001.nc", "drill/O1001.nc"]
    assert await storage.purge(None, old + 30 * day) == 0
