"""One sync batch per edge at a time, where a newer batch supersedes one that is still on its way.

An edge sends one batch at a time and waits for its ack. When a network drop
leaves a request of it half-sent, the cloud would wait for bytes that never
come; the edge gives up and sends again. The newer request (the one whose
head arrived later) takes over at once:

- an old request still reading its body is stopped (it answers 409 if its
  client still listens), and what it held is let go;
- an old request whose body is in but that has not started storing is dropped
  before it stores anything (409);
- an old request already storing finishes: the new one waits for it. Storing
  is one transaction per batch and one batch per edge at a time, so a batch
  is stored whole or not at all, and frames the old one stored come back as
  duplicates in the new one's ack.

Per process: with several workers or replicas, each keeps its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

from cloud.errors import Superseded
from cloud.guard import BodyGuard

__all__ = ["Claim", "EdgeSlots"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Claim:
    """One request's hold on its edge's slot."""

    edge: str
    guard: BodyGuard | None
    arrived: float
    superseded: bool = False

    def supersede(self) -> None:
        self.superseded = True
        if self.guard is not None:
            self.guard.abort(Superseded(
                f"a newer batch of edge {self.edge} arrived while this one was still arriving; this one is "
                "dropped and nothing of it is stored"))


@dataclass(eq=False)
class _Edge:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    current: Claim | None = None
    holders: int = 0


class EdgeSlots:
    """The sync requests of each edge in this process (see the module doc)."""

    def __init__(self) -> None:
        self._edges: dict[str, _Edge] = {}

    @contextlib.contextmanager
    def claim(self, edge: str, guard: BodyGuard | None) -> Iterator[Claim]:
        """Take the edge's slot for one request, superseding the request that had it."""
        entry = self._edges.setdefault(edge, _Edge())
        arrived = guard.arrived if guard is not None else asyncio.get_running_loop().time()
        mine = Claim(edge, guard, arrived)
        if entry.current is not None and entry.current.arrived > arrived:
            mine.supersede()  # checked its token more slowly than a newer request: that one goes on
        else:
            if entry.current is not None:
                log.info("edge %s sent a new batch while its previous one was still on its way; the previous "
                         "one is dropped", edge)
                entry.current.supersede()
            entry.current = mine
        entry.holders += 1
        try:
            yield mine
        finally:
            entry.holders -= 1
            if entry.current is mine:
                entry.current = None
            if entry.holders == 0:
                del self._edges[edge]

    @contextlib.asynccontextmanager
    async def storing(self, claim: Claim) -> AsyncIterator[None]:
        """Store under the edge's lock, unless a newer batch superseded this one meanwhile (Superseded)."""
        async with self._edges[claim.edge].lock:
            if claim.superseded:
                raise Superseded(f"a newer batch of edge {claim.edge} arrived before this one was stored; this "
                                 "one is dropped and nothing of it is stored")
            yield
