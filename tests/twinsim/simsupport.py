"""Helpers for the simulator tests: a run of free consecutive ports and a running Simulator."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from tests.support import free_ports
from twinsim.runner import SimSettings, Simulator

__all__ = ["free_ports", "running"]


@contextlib.asynccontextmanager
async def running(settings: SimSettings) -> AsyncIterator[Simulator]:
    """A Simulator serving in a named task; yields once both servers listen, cancels and waits on exit."""
    sim = Simulator(settings)
    ready = asyncio.Event()
    task = asyncio.create_task(sim.run(on_ready=ready.set), name="test-twinsim")
    try:
        async with asyncio.timeout(20):
            waiter = asyncio.create_task(ready.wait(), name="test-twinsim-ready")
            done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                waiter.cancel()
                task.result()  # raises the start-up error
        yield sim
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(15):
                await task
