"""A source's data, its events, documents and position in its input: one transaction, all or nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge.config import StoreConfig
from edge.sources.base import Position
from edge.store import QueueFull, Store
from edge.writer import StoreWriter
from shared.batch import Document, EdgeEvent
from shared.frame import TelemetryFrame

T0 = 1_800_000_000.0
KEY = "mtconnect:okuma"


def frame(i: int) -> TelemetryFrame:
    return TelemetryFrame(ts=T0 + i, device_id="okuma", sensors={"Xact": float(i)})


def event(i: int) -> EdgeEvent:
    return EdgeEvent(ts=T0 + i, kind="data_gap", level="operator", message=f"gap {i}", edge="edge-1", device="okuma",
                     details={"lost": i})


def document(i: int, size: int = 10) -> Document:
    return Document(ts=T0 + i, kind="asset", key=f"tool-{i}", device="okuma", body={"xml": "x" * size, "n": i})


async def make(tmp_path: Path, **config: object) -> tuple[Store, StoreWriter]:
    store = Store(tmp_path / "q.db", StoreConfig.model_validate(config))
    await store.open()
    return store, StoreWriter(store, max_frames=1000, max_delay=0.01, queue_frames=10_000)


async def test_frames_events_documents_and_the_position_are_stored_together(tmp_path: Path) -> None:
    store, writer = await make(tmp_path)
    assert await writer.position(KEY) is None
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(writer.run(), name="writer")
        await writer.put([frame(0), frame(1)], durable=True, events=[event(1)], documents=[document(1)],
                         position=Position(KEY, '{"next": 2}'))
        task.cancel()
    assert await writer.position(KEY) == '{"next": 2}'
    assert [r.frame_dict()["sensors"]["Xact"] for r in await store.read()] == [0.0, 1.0]
    assert [e.event_dict()["details"]["lost"] for e in await store.read_events()] == [1]
    docs = await store.read_documents()
    assert [(d.kind, d.key, d.document().body["n"]) for d in docs] == [("asset", "tool-1", 1)]
    assert store.document_depth == 1 and store.event_depth == 1
    await store.close()
    # and after a restart, from the file
    again = Store(tmp_path / "q.db", StoreConfig())
    await again.open()
    assert await again.position(KEY) == '{"next": 2}'
    assert again.document_depth == 1 and again.event_depth == 1
    await again.close()


async def test_puts_in_one_transaction_apply_their_positions_in_order(tmp_path: Path) -> None:
    store, writer = await make(tmp_path)
    # Queued before the writer runs: all of them go into one transaction.
    puts = [asyncio.create_task(writer.put([frame(i)], durable=True, position=Position(KEY, str(i))))
            for i in range(5)]
    other = asyncio.create_task(writer.put([], durable=True, position=Position("mtconnect:mazak", "m")))
    await asyncio.sleep(0)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(writer.run(), name="writer")
        await asyncio.gather(*puts, other)
        task.cancel()
    assert writer.commits == 1
    assert await store.position(KEY) == "4"
    assert await store.position("mtconnect:mazak") == "m"
    await store.close()


async def test_a_position_without_waiting_for_the_commit_is_refused(tmp_path: Path) -> None:
    store, writer = await make(tmp_path)
    with pytest.raises(ValueError, match="durable"):
        await writer.put([frame(0)], position=Position(KEY, "1"))
    await store.close()


async def test_events_and_a_position_without_frames_are_stored(tmp_path: Path) -> None:
    store, writer = await make(tmp_path)
    seen: list[str] = []

    async def told(events: object) -> None:
        seen.extend(e.message for e in events)  # type: ignore[attr-defined]

    writer.on_events(told)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(writer.run(), name="writer")
        await writer.put([], durable=True, events=[event(7)], position=Position(KEY, "7"))
        task.cancel()
    assert await store.position(KEY) == "7"
    assert [e.event_dict()["message"] for e in await store.read_events()] == ["gap 7"]
    assert seen == ["gap 7"]
    await store.close()


async def test_a_refused_batch_stores_none_of_its_events_documents_or_position(tmp_path: Path) -> None:
    store, writer = await make(tmp_path, disk_budget=1024**2, when_full="drop_newest")
    template = TelemetryFrame(ts=T0, device_id="okuma", sensors={f"s{k}": float(k) for k in range(40)})
    with contextlib.suppress(QueueFull):
        for start in range(0, 2000, 100):
            await store.append([template.model_copy(update={"ts": T0 - 100_000 + start + i}) for i in range(100)])
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(writer.run(), name="writer")
        await writer.put([], durable=True, position=Position(KEY, "before"))
        accepted: list[int] = []
        refused: list[int] = []
        for i in range(200):
            try:
                await writer.put([template.model_copy(update={"ts": T0 + i})], durable=True, events=[event(i)],
                                 documents=[document(i)], position=Position(KEY, f"at {i}"))
                accepted.append(i)
            except QueueFull:
                refused.append(i)
                assert await store.position(KEY) == (f"at {accepted[-1]}" if accepted else "before")
        task.cancel()
    assert len(refused) >= 3, "the queue never filled"
    # Exactly the accepted puts left their events and documents; the refused ones nothing.
    assert [e.event_dict()["details"]["lost"] for e in await store.read_events(limit=1000)] == accepted
    assert [d.document().body["n"] for d in await store.read_documents(limit=1000)] == accepted
    await store.close()


async def test_a_refused_put_that_did_not_wait_counts_its_events_and_documents_as_dropped(tmp_path: Path) -> None:
    store, _ = await make(tmp_path)
    await store.refused("disk_full", unacked=0, dropped=3, events_dropped=2, documents_dropped=1)
    stats = await store.stats()
    assert stats.event_drops == {"disk_full": 2}
    assert stats.document_drops == {"disk_full": 1}
    await store.close()


async def test_acknowledged_documents_leave_the_queue(tmp_path: Path) -> None:
    store, _ = await make(tmp_path)
    await store.append([], documents=[document(i) for i in range(5)])
    docs = await store.read_documents(limit=3)
    assert [d.key for d in docs] == ["tool-0", "tool-1", "tool-2"]
    assert [d.key for d in await store.read_documents(after_seq=docs[-1].seq)] == ["tool-3", "tool-4"]
    assert await store.ack_documents(docs[-1].seq) == 3
    assert store.document_depth == 2
    assert [d.key for d in await store.read_documents()] == ["tool-3", "tool-4"]
    await store.close()


async def test_documents_past_the_cap_drop_the_oldest_and_are_counted(tmp_path: Path) -> None:
    store, _ = await make(tmp_path, documents_max=10)
    for start in range(0, 15, 5):
        await store.append([frame(start)], documents=[document(i) for i in range(start, start + 5)])
    assert store.document_depth == 10
    assert [d.key for d in await store.read_documents()] == [f"tool-{i}" for i in range(5, 15)]
    assert (await store.stats()).document_drops == {"over_cap": 5}
    await store.close()


async def test_documents_past_their_byte_cap_drop_the_oldest_and_are_counted(tmp_path: Path) -> None:
    store, _ = await make(tmp_path, documents_max_bytes="1MiB")
    for start in range(0, 60, 10):  # 60 documents of about 20 kB: 1.2 MB, a flood of asset changes
        await store.append([frame(start)], documents=[document(i, size=20_000) for i in range(start, start + 10)])
    kept = [d.document().body["n"] for d in await store.read_documents(limit=1000)]
    assert kept == list(range(60 - len(kept), 60)) and 40 <= len(kept) < 53  # the newest, under 1 MiB
    assert (await store.stats()).document_drops == {"over_bytes": 60 - len(kept)}
    await store.close()
    reopened, _ = await make(tmp_path, documents_max_bytes="1MiB")  # the bytes are measured again on open
    assert reopened.document_depth == len(kept)
    await reopened.close()


async def test_the_disk_budget_drops_frames_and_never_documents(tmp_path: Path) -> None:
    store, _ = await make(tmp_path, disk_budget=1024**2)
    await store.append([frame(-1)], documents=[document(i, size=20_000) for i in range(10)])  # ~200 kB
    template = TelemetryFrame(ts=T0, device_id="okuma", sensors={f"s{k}": float(k) for k in range(40)})
    for start in range(0, 3000, 100):
        await store.append([template.model_copy(update={"ts": T0 + 10 + start + i}) for i in range(100)])
    stats = await store.stats()
    assert stats.drops.get("disk_budget_oldest", 0) > 0, "the budget was never reached"
    assert store.document_depth == 10
    assert [d.document().body["n"] for d in await store.read_documents()] == list(range(10))
    await store.close()


# --- a kill between puts ---------------------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import asyncio, json, sys
    from pathlib import Path
    from edge.config import StoreConfig
    from edge.sources.base import Position
    from edge.store import Store
    from edge.writer import StoreWriter
    from shared.batch import Document, EdgeEvent
    from shared.frame import TelemetryFrame

    T0 = 1_800_000_000.0
    KEY = "mtconnect:okuma"

    async def main(path):
        store = Store(Path(path), StoreConfig(synchronous="normal"))
        await store.open()
        writer = StoreWriter(store, max_frames=50, max_delay=0.002, queue_frames=1000)
        at = await writer.position(KEY)
        n = json.loads(at)["next"] if at else 0
        async with asyncio.TaskGroup() as tg:
            tg.create_task(writer.run())
            print("ready", flush=True)
            async def source(n):
                while True:
                    frames = [TelemetryFrame(ts=T0 + n + i, device_id="okuma", sensors={"x": float(n + i)})
                              for i in range(3)]
                    event = EdgeEvent(ts=T0 + n, kind="data_gap", level="operator", message="m", edge="e1",
                                      details={"n": n})
                    doc = Document(ts=T0 + n, kind="asset", key=f"a{n}", body={"n": n})
                    n += 3
                    await writer.put(frames, durable=True, events=[event], documents=[doc],
                                     position=Position(KEY, json.dumps({"next": n})))
            tg.create_task(source(n))

    asyncio.run(main(sys.argv[1]))
""")


def check_file(path: Path) -> int:
    """The file as a crash left it: the position covers exactly the data stored. Returns the position."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        row = db.execute("SELECT value FROM positions WHERE key = ?", (KEY,)).fetchone()
        position = json.loads(row[0])["next"] if row else 0
        ts = [r[0] for r in db.execute("SELECT ts FROM frames ORDER BY ts")]
        events = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        documents = db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
    assert ts == [T0 + i for i in range(position)], "frames and position disagree"
    assert events == documents == position // 3
    return position


def test_a_kill_between_puts_never_separates_a_position_from_its_data(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    rng = random.Random(14)
    positions = []
    for _ in range(8):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, env=env)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"ready"
        before = check_file(path) if positions else 0
        # Let it write for a while (a random moment), then kill it without warning.
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=rng.uniform(0.2, 0.6))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        positions.append(check_file(path))
        assert positions[-1] >= before
    assert positions[-1] > positions[0] > 0, "the writer never got going"


PREVIOUS_SCHEMA = """
CREATE TABLE frames (seq INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, ts REAL NOT NULL,
                     stored_at REAL NOT NULL, payload BLOB NOT NULL);
CREATE UNIQUE INDEX frames_identity ON frames (device_id, ts);
CREATE TABLE quarantine (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, origin TEXT NOT NULL,
                         reason TEXT NOT NULL, payload BLOB);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE alerts (seq INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, ts REAL NOT NULL,
                     stored_at REAL NOT NULL, alert_id TEXT NOT NULL, event TEXT NOT NULL, payload BLOB NOT NULL);
CREATE UNIQUE INDEX alerts_identity ON alerts (alert_id, event);
CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, level INTEGER NOT NULL,
                     device_id TEXT, stored_at REAL NOT NULL, synced INTEGER NOT NULL DEFAULT 0, payload BLOB NOT NULL);
CREATE INDEX events_unsynced ON events (synced, seq);
"""


async def test_a_queue_file_of_the_previous_version_is_upgraded_in_place(tmp_path: Path) -> None:
    store, _ = await make(tmp_path / "new")
    await store.append([frame(0)])
    await store.close()
    old = sqlite3.connect(tmp_path / "q.db")  # the frames waiting in a file without positions and documents
    old.executescript(PREVIOUS_SCHEMA)
    with sqlite3.connect(tmp_path / "new" / "q.db") as new:
        row = new.execute("SELECT device_id, ts, stored_at, payload FROM frames").fetchone()
    old.execute("INSERT INTO frames(seq, device_id, ts, stored_at, payload) VALUES (1000, ?, ?, ?, ?)", row)
    old.commit()
    old.close()
    store, writer = await make(tmp_path)
    assert store.depth == 1 and store.document_depth == 0 and await store.position(KEY) is None
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(writer.run(), name="writer")
        await writer.put([frame(1)], durable=True, documents=[document(1)], position=Position(KEY, '{"next": 9}'))
        task.cancel()
    assert [r.frame_dict()["sensors"]["Xact"] for r in await store.read()] == [0.0, 1.0]
    assert await store.position(KEY) == '{"next": 9}' and store.document_depth == 1
    assert (await store.stats()).as_dict()["documents"] == {"pending": 1, "dropped": {}}
    await store.close()
