"""Source registry: every config ``kind`` maps to its config model and its class, in one dict."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from edge.sources.base import Backoff, FrameSink, Source, SourceHealth, SourceState
from edge.sources.modbus import ModbusSource, ModbusSourceConfig
from edge.sources.opcua import OpcUaSource, OpcUaSourceConfig

__all__ = [
    "SOURCES",
    "Backoff",
    "FrameSink",
    "Source",
    "SourceConfig",
    "SourceHealth",
    "SourceState",
    "build_source",
]

SourceConfig = Annotated[ModbusSourceConfig | OpcUaSourceConfig, Field(discriminator="kind")]

SOURCES: dict[str, tuple[type, type[Source]]] = {
    "modbus": (ModbusSourceConfig, ModbusSource),
    "opcua": (OpcUaSourceConfig, OpcUaSource),
}


def build_source(config: ModbusSourceConfig | OpcUaSourceConfig, sink: FrameSink) -> Source:
    _, cls = SOURCES[config.kind]
    return cls(config, sink)
