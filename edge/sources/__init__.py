"""Source registry: every config ``kind`` maps to its config model and its class, in one dict.

A source is one package under ``edge/sources/<protocol>/`` (config, client,
source, probe); what all sources share (the sink, health, backoff) is in
``edge.sources.base``. The config models load without the protocol libraries;
a source's class, and with it pymodbus or asyncua, is imported only when a
source of that kind is built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from edge.sources.base import Backoff, FrameSink, Source, SourceHealth, SourceState
from edge.sources.modbus.config import ModbusSourceConfig
from edge.sources.mtconnect.config import MTConnectSourceConfig
from edge.sources.opcua.config import OpcUaSourceConfig
from edge.sources.programs.config import ProgramsSourceConfig
from shared.configbase import StrictModel

__all__ = [
    "SOURCES",
    "Backoff",
    "FrameSink",
    "Source",
    "SourceConfig",
    "SourceHealth",
    "SourceKind",
    "SourceState",
    "build_source",
]

AnySourceConfig = ModbusSourceConfig | OpcUaSourceConfig | MTConnectSourceConfig | ProgramsSourceConfig
SourceConfig = Annotated[AnySourceConfig, Field(discriminator="kind")]


@dataclass(frozen=True)
class SourceKind:
    """A ``kind`` of source: its config model, and where its class lives (imported on first use)."""

    config: type[StrictModel]
    module: str
    cls: str

    def load(self) -> type[Source]:
        loaded = getattr(importlib.import_module(self.module), self.cls)
        assert issubclass(loaded, Source)
        return loaded


SOURCES: dict[str, SourceKind] = {
    "modbus": SourceKind(ModbusSourceConfig, "edge.sources.modbus.source", "ModbusSource"),
    "opcua": SourceKind(OpcUaSourceConfig, "edge.sources.opcua.source", "OpcUaSource"),
    "mtconnect": SourceKind(MTConnectSourceConfig, "edge.sources.mtconnect.source", "MTConnectSource"),
    "programs": SourceKind(ProgramsSourceConfig, "edge.sources.programs.source", "ProgramsSource"),
}


def build_source(config: AnySourceConfig, sink: FrameSink) -> Source:
    return SOURCES[config.kind].load()(config, sink)
