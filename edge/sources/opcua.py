"""OpcUa source (placeholder until the connector lands)."""

from __future__ import annotations

from typing import Literal

from edge.sources.base import Source
from shared.configbase import StrictModel


class OpcUaSourceConfig(StrictModel):
    kind: Literal["opcua"]
    name: str


class OpcUaSource(Source):
    kind = "opcua"

    async def run(self) -> None:
        raise NotImplementedError("the opcua source is not built yet")
