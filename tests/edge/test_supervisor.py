"""The supervisor: restarts with a growing delay while a task keeps crashing, the shortest after a steady run."""

from __future__ import annotations

import asyncio

import pytest

from edge.supervisor import Supervisor


def crashing(runs_for: float):  # type: ignore[no-untyped-def]
    async def target() -> None:
        await asyncio.sleep(runs_for)
        raise RuntimeError("a bug")
    return target


async def delays_of(runs_for: float, crashes: int, steady_run: float) -> list[float]:
    delays: list[float] = []
    supervisor = Supervisor("part", delay=0.001, budget=crashes - 1, steady_run=steady_run,
                            on_restart=lambda _reason, delay: delays.append(delay))
    async with asyncio.timeout(10):
        gave_up = await supervisor.run(crashing(runs_for))
    assert gave_up.crashes == crashes and "a bug" in gave_up.reason
    return delays


async def test_a_task_that_keeps_crashing_waits_longer_each_time() -> None:
    delays = await delays_of(0.0, crashes=5, steady_run=60)  # no run is steady, however slow the machine
    assert len(delays) == 4
    assert delays[2] >= 0.002 and delays[3] >= 0.004  # 1, 2, 4, 8 ms with jitter in [d/2, d]


async def test_a_crash_after_a_steady_run_is_restarted_after_the_shortest_delay() -> None:
    delays = await delays_of(0.03, crashes=5, steady_run=0.02)  # each run lasts at least 0.03 s
    assert len(delays) == 4
    assert max(delays) <= 0.001  # the growth starts again after each steady run


async def test_cancellation_goes_through() -> None:
    task = asyncio.create_task(Supervisor("part").run(crashing(10.0)), name="supervised")
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
