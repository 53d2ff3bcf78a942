"""Modbus source (placeholder until the connector lands)."""

from __future__ import annotations

from typing import Literal

from edge.sources.base import Source
from shared.configbase import StrictModel


class ModbusSourceConfig(StrictModel):
    kind: Literal["modbus"]
    name: str


class ModbusSource(Source):
    kind = "modbus"

    async def run(self) -> None:
        raise NotImplementedError("the modbus source is not built yet")
