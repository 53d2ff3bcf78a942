"""The bound on heavy queries: slots go to clients in turn, queues are bounded per client and in all."""

from __future__ import annotations

import asyncio

import pytest

from cloud.config import QueryConfig
from cloud.querygate import QueryGate, QueryQueueFull


def gate(**settings: object) -> QueryGate:
    return QueryGate(QueryConfig.model_validate({"max_running": 1, **settings}))


async def _queue(g: QueryGate, client: str, name: str, served: list[str], go: asyncio.Event) -> None:
    async with g.slot(client):
        served.append(name)
        await go.wait()


async def test_a_free_slot_goes_to_the_clients_in_turn() -> None:
    g, served, go = gate(), [], asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        async with g.slot("dash-a"):
            for name in ("a2", "a3", "a4"):
                tg.create_task(_queue(g, "dash-a", name, served, go))
                await asyncio.sleep(0)
            tg.create_task(_queue(g, "dash-b", "b1", served, go))
            await asyncio.sleep(0)
            assert (g.running, g.queued) == (1, 4)
        go.set()
    assert served == ["a2", "b1", "a3", "a4"]  # b1 waits behind one of dash-a's requests, not all three
    assert (g.running, g.queued) == (0, 0)


async def test_a_client_may_keep_only_so_many_requests_waiting() -> None:
    g, served, go = gate(max_queued_per_client=2), [], asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        async with g.slot("dash-a"):
            for name in ("a2", "a3"):
                tg.create_task(_queue(g, "dash-a", name, served, go))
                await asyncio.sleep(0)
            with pytest.raises(QueryQueueFull, match="this token has 2"):
                await _queue(g, "dash-a", "a4", served, go)
            tg.create_task(_queue(g, "dash-b", "b1", served, go))  # another client still gets in line
            await asyncio.sleep(0)
        go.set()
    assert served == ["a2", "b1", "a3"]


async def test_the_whole_queue_is_bounded() -> None:
    g = gate(max_queued=0)
    async with g.slot("dash-a"):
        with pytest.raises(QueryQueueFull, match="waiting already"):
            async with g.slot("dash-b"):
                pass
    async with g.slot("dash-b"):  # free again
        assert g.running == 1


async def test_a_request_that_waits_too_long_is_refused_and_leaves_the_queue() -> None:
    g = gate(max_wait="100ms")
    async with g.slot("dash-a"):
        with pytest.raises(QueryQueueFull, match="within 0.1 s"):
            async with g.slot("dash-b"):
                pass
        assert g.queued == 0
    assert g.running == 0


async def test_a_request_given_up_by_its_client_leaves_the_queue() -> None:
    g = gate()
    async with g.slot("dash-a"):
        waiting = asyncio.create_task(_queue(g, "dash-b", "b1", [], asyncio.Event()))
        await asyncio.sleep(0)
        assert g.queued == 1
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert g.queued == 0
    assert g.running == 0
