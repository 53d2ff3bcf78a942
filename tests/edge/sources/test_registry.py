"""The source registry: every kind has a config model and a class, and configs load without protocol libraries."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge.sources import SOURCES, Source


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_every_kind_has_a_source_class_of_that_kind(kind: str) -> None:
    entry = SOURCES[kind]
    cls = entry.load()
    assert issubclass(cls, Source)
    assert cls.kind == kind
    assert entry.config.model_fields["kind"].annotation.__args__ == (kind,)  # type: ignore[union-attr]


def test_loading_a_config_imports_no_protocol_library() -> None:
    """`twinedge status` and `check-config` load the config: they must not pay for pymodbus, asyncua or amqtt."""
    code = (
        "import sys; import edge.cli, edge.config, edge.sources; "
        "from edge.config import load_gateway_config; "
        "print(sorted(m for m in ('pymodbus', 'asyncua', 'amqtt', 'aiosqlite', 'httpx', 'cryptography') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
