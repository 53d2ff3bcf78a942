"""drop_oldest while the uplink holds a batch: frames dropped from the queue but delivered anyway count once,
as delivered, so that dropped + delivered = produced."""

from __future__ import annotations

import asyncio
import gzip
from collections import Counter
from pathlib import Path

import httpx
import msgpack

from edge.config import StoreConfig, UplinkConfig
from edge.store import Store
from edge.uplink import Uplink
from shared.batch import EdgeHealth
from shared.frame import TelemetryFrame

T0 = 1_800_000_000.0
_TEMPLATE = TelemetryFrame(ts=T0, device_id="press-1", sensors={f"s{k}": float(k) + 0.5 for k in range(40)})


def frames(start: int, n: int) -> list[TelemetryFrame]:
    return [_TEMPLATE.model_copy(update={"ts": T0 + start + i}) for i in range(n)]


async def test_frames_dropped_while_the_uplink_holds_them_and_then_acknowledged_count_as_delivered(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "q.db", StoreConfig(disk_budget=1024**2))
    await store.open()
    try:
        await store.append(frames(0, 200))
        held = await store.read(limit=100)  # the batch the uplink is sending
        produced = 200
        while await store.read(through_seq=held[-1].seq):  # new frames push the oldest, the held batch too, out
            await store.append(frames(produced, 100))
            produced += 100
        # ... and the cloud acknowledges it anyway: those frames were delivered, not lost.
        await store.ack(held[-1].seq, from_seq=held[0].seq, sent=len(held))
        stats = await store.stats()
        assert stats.drops["disk_budget_oldest"] + stats.depth + len(held) == produced
    finally:
        await store.close()


async def test_through_the_uplink_every_frame_is_either_delivered_once_or_counted_as_dropped(tmp_path: Path) -> None:
    store = Store(tmp_path / "q.db", StoreConfig(disk_budget=1024**2))
    await store.open()
    produced = 300
    await store.append(frames(0, produced))
    delivered: Counter[float] = Counter()

    async def cloud(request: httpx.Request) -> httpx.Response:
        nonlocal produced
        batch = msgpack.unpackb(gzip.decompress(request.content), raw=False)
        if not delivered:
            # While the first batch is in flight, a burst pushes it and more out of the queue.
            while store.drops.get("disk_budget_oldest", 0) < 250:
                await store.append(frames(produced, 100))
                produced += 100
        delivered.update(f["frame"]["ts"] for f in batch["frames"])
        return httpx.Response(200, json={"acked_through": batch["frames"][-1]["seq"],
                                         "stored": len(batch["frames"]), "duplicates": 0, "rejected": []})

    async def health() -> EdgeHealth:
        return EdgeHealth(queue_depth=store.depth)

    config = UplinkConfig.model_validate({"url": "http://cloud.test", "token": "t", "batch_max_frames": 100,
                                          "interval": "0s", "retry_initial": "10ms", "retry_max": "50ms"})
    uplink = Uplink(config, store, edge_id="edge-1", health=health, transport=httpx.MockTransport(cloud))
    task = asyncio.create_task(uplink.run(), name="uplink")
    try:
        async with asyncio.timeout(30):
            while store.depth or not delivered:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    dropped = store.drops["disk_budget_oldest"]
    await store.close()
    assert max(delivered.values()) == 1, "a frame was delivered twice"
    assert dropped > 0 and dropped + len(delivered) == produced
