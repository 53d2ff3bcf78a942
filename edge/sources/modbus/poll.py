"""One poll cycle of one Modbus device: read every planned block, decode every tag.

Shared by the source and by ``twinedge probe modbus`` so that a probe shows
exactly what the running gateway would report.

A block that the device refuses with "illegal data address" (or "illegal data
value") is split at once: first into its contiguous runs (the merge may have
bridged a hole in the device's map), then into single values. Only a value
that fails on its own stays failing; it is retried with a backoff while the
rest of the device keeps flowing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from edge.sources.base import Backoff
from edge.sources.modbus.client import DeviceError, NoAnswer
from edge.sources.modbus.map import Block, Tag, Value, plan_blocks

__all__ = ["CycleResult", "DevicePoller", "Link"]

log = logging.getLogger(__name__)

_SPLIT_CODES = frozenset({2, 3})  # illegal data address, illegal data value


class Link(Protocol):
    where: str

    async def connect(self) -> None: ...

    async def read(self, table: str, address: int, count: int) -> list[int] | list[bool]: ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class _BlockState:
    problem: str | None = None
    retry_at: float = 0.0
    backoff: Backoff | None = None


@dataclass
class CycleResult:
    values: dict[str, Value] = field(default_factory=dict)
    failing: dict[str, str] = field(default_factory=dict)  # block description -> reason
    invalid: dict[str, str] = field(default_factory=dict)  # tag name -> reason
    requests: int = 0
    ok_blocks: int = 0
    raw: dict[str, list[int] | list[bool]] = field(default_factory=dict)  # only with keep_raw (the probe)


class DevicePoller:
    """Reads a device's blocks through a link and decodes them into named values."""

    def __init__(
        self,
        link: Link,
        tags: Sequence[Tag],
        *,
        max_registers: int,
        max_bits: int,
        max_gap: int,
        label: str,
        retry_max: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        keep_raw: bool = False,
    ) -> None:
        self.link = link
        self.blocks = plan_blocks(tags, max_registers, max_bits, max_gap)
        self.label = label
        self._max_registers, self._max_bits = max_registers, max_bits
        self._retry_max = retry_max
        self._clock = clock
        self._keep_raw = keep_raw
        self._state: dict[int, _BlockState] = {}

    async def read_cycle(self) -> CycleResult:
        """Read every block that is due. Raises LinkError when the device is gone or silent."""
        result = CycleResult()
        now = self._clock()
        pending = list(self.blocks)
        while pending:
            block = pending.pop(0)
            state = self._state.get(id(block))
            if state is not None and state.retry_at > now:
                result.failing[block.describe()] = state.problem or "failing"
                continue
            result.requests += 1
            try:
                words = await self.link.read(block.table, block.address, block.count)
            except NoAnswer:
                if result.ok_blocks == 0:
                    raise  # nothing answered yet this cycle: the device is silent, not one block
                self._fail(block, "did not answer this read in time", result)
                continue
            except DeviceError as exc:
                pieces = self._split(block) if exc.code in _SPLIT_CODES else []
                if pieces:
                    log.info("%s: %s refused as one read (%s); reading it as %d smaller reads",
                             self.label, block.describe(), exc, len(pieces))
                    self._replace(block, pieces)
                    pending[0:0] = pieces
                    continue
                self._fail(block, str(exc), result)
                continue
            self._ok(block)
            result.ok_blocks += 1
            self._decode(block, words, result)
        return result

    def _decode(self, block: Block, words: Sequence[int] | Sequence[bool], result: CycleResult) -> None:
        values = result.values
        base = block.address
        if self._keep_raw:
            for tag in block.tags:
                start = tag.address - base
                result.raw[tag.name] = list(words[start:start + tag.width])
        for tag in block.tags:
            # read_block checked the length, so decoding cannot fail: struct sizes come from the same width.
            value = tag.value(words, tag.address - base)
            if tag.is_float and not Tag.finite(value):
                result.invalid[tag.name] = f"is not a finite number ({value})"
                continue
            values[tag.name] = value

    def _split(self, block: Block) -> list[Block]:
        if len(block.tags) < 2:
            return []
        runs = plan_blocks(block.tags, self._max_registers, self._max_bits, 0)
        if len(runs) > 1:
            return runs
        return [Block(t.table, t.address, t.width, [t]) for t in block.tags]

    def _replace(self, block: Block, pieces: list[Block]) -> None:
        index = self.blocks.index(block)
        self.blocks[index:index + 1] = pieces
        self._state.pop(id(block), None)

    def _fail(self, block: Block, reason: str, result: CycleResult) -> None:
        state = self._state.setdefault(id(block), _BlockState())
        if state.backoff is None:
            state.backoff = Backoff(initial=1.0, maximum=self._retry_max)
        delay = state.backoff.next_delay()
        state.retry_at = self._clock() + delay
        if state.problem != reason:
            log.warning("%s: reading %s failed: %s; other values keep flowing, retrying this one with backoff",
                        self.label, block.describe(), reason)
            state.problem = reason
        result.failing[block.describe()] = reason

    def _ok(self, block: Block) -> None:
        state = self._state.pop(id(block), None)
        if state is not None and state.problem is not None:
            log.info("%s: %s reads again", self.label, block.describe())
