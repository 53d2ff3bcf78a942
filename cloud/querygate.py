"""A bound on the heavy queries (history, aggregates, program search and runs) a process runs at once, with a
fair queue.

At most ``max_running`` run at once. The others wait in one queue per client
(the identity of the token), and a free slot goes to the clients in turn, so
a dashboard that fires forty requests waits behind its own requests, not in
front of everybody else's. A client may have ``max_queued_per_client``
requests waiting and the process ``max_queued``; past either, or after
waiting ``max_wait``, a request is refused with 503 and Retry-After.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from cloud.config import QueryConfig
from cloud.errors import Busy

if TYPE_CHECKING:
    from cloud.storage.base import Principal

__all__ = ["QueryGate", "QueryQueueFull", "client_of"]


def client_of(who: Principal) -> str:
    """Whose turn a query waits for: one queue per token identity."""
    return f"{who.kind}:{who.name}"


class QueryQueueFull(Busy):
    """Too many heavy queries are waiting (for this client, or in all)."""


class QueryGate:
    def __init__(self, config: QueryConfig) -> None:
        self._config = config
        self._running = 0
        self._queued = 0
        self._queues: dict[str, deque[asyncio.Future[None]]] = {}
        self._turns: deque[str] = deque()  # clients with requests waiting, in the order they are served

    @property
    def running(self) -> int:
        return self._running

    @property
    def queued(self) -> int:
        return self._queued

    @asynccontextmanager
    async def slot(self, client: str) -> AsyncIterator[None]:
        """Run the block in a slot; wait for one in ``client``'s turn, or raise QueryQueueFull."""
        await self._acquire(client)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, client: str) -> None:
        cfg = self._config
        if self._running < cfg.max_running and not self._queued:
            self._running += 1
            try:
                # A query may read and compute without giving the event loop back (short SQLite reads run on
                # it): yield once here, so that requests that arrived together all reach the gate, and wait or
                # are refused by its rules, before any of them takes the loop for its query.
                await asyncio.sleep(0)
            except BaseException:
                self._release()
                raise
            return
        queue = self._queues.get(client)
        if self._queued >= cfg.max_queued:
            raise QueryQueueFull(f"{self._queued} heavy queries (history, aggregates, searches) are waiting "
                                 "already; retry later")
        if queue is not None and len(queue) >= cfg.max_queued_per_client:
            raise QueryQueueFull(f"this token has {len(queue)} heavy queries (history, aggregates, searches) "
                                 "waiting already; retry later")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if queue is None:
            queue = self._queues[client] = deque()
            self._turns.append(client)
        queue.append(waiter)
        self._queued += 1
        try:
            async with asyncio.timeout(cfg.max_wait):
                await waiter
        except TimeoutError:
            self._give_up(client, waiter)
            raise QueryQueueFull(f"no query slot came free within {cfg.max_wait:g} s; retry later") from None
        except BaseException:
            self._give_up(client, waiter)
            raise

    def _give_up(self, client: str, waiter: asyncio.Future[None]) -> None:
        if waiter.done() and not waiter.cancelled():
            self._release()  # the slot was handed over just as the request gave up: pass it on
            return
        queue = self._queues.get(client)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            self._queued -= 1
            if not queue:
                del self._queues[client]
                self._turns.remove(client)

    def _release(self) -> None:
        """Hand the slot to the next client's oldest request, or free it."""
        while self._turns:
            client = self._turns.popleft()
            queue = self._queues[client]
            waiter = queue.popleft()
            self._queued -= 1
            if queue:
                self._turns.append(client)
            else:
                del self._queues[client]
            if not waiter.done():
                waiter.set_result(None)
                return
        self._running -= 1
