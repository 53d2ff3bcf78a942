"""Keeps the garbage collector's full passes off the objects the daemon holds for its whole life.

Python's cyclic collector walks every tracked object of the process on a full pass, and under load a full pass
comes every few hundred thousand frames. Most of what it walks was made at start-up (modules, the config, the
broker and the sources) or when a model was loaded (numpy, onnxruntime, the package's schema and card): tens of
thousands of objects that live as long as the daemon, walked on every pass for nothing. ``settle`` collects once
and then freezes what is alive (``gc.freeze``), so that later passes walk only what came after, the data in
flight. Frozen objects are still freed when nothing refers to them; only a cycle among them is never collected.

Only the daemon settles (``enable``, then ``settle`` once it is ready and after each model is loaded): a process
that embeds the gateway or the inference engine, a test for instance, keeps its collector as it is.
"""

from __future__ import annotations

import gc

__all__ = ["enable", "settle"]

_enabled = False


def enable() -> None:
    """Let ``settle`` act in this process (the daemon calls it at start-up)."""
    global _enabled  # noqa: PLW0603 - one switch for the process, like the collector it drives
    _enabled = True


def settle() -> None:
    """Collect, then freeze every object alive now, if ``enable`` was called; otherwise nothing."""
    if _enabled:
        gc.collect()
        gc.freeze()
