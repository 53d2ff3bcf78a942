"""`twinedge probe opcua` against a real asyncua server: output for people, JSON for scripts, exit codes."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from edge.sources.opcua import probe as opcua_probe
from tests.edge.sources.test_opcua_support import TestServer
from tests.support import free_port

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server() -> AsyncIterator[TestServer]:
    srv = await TestServer(free_port()).start()
    yield srv
    await srv.stop()


@pytest.fixture(autouse=True)
def restore_asyncua_log_level() -> Iterator[None]:
    """The probe quiets asyncua's logger (a CLI process setting); keep that out of other tests."""
    library = logging.getLogger("asyncua")
    level = library.level
    yield
    library.setLevel(level)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="twinedge probe opcua")
    opcua_probe.add_arguments(parser)
    return parser.parse_args(list(argv))


async def probe(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = await opcua_probe.run(parse(*argv))
    return code, capsys.readouterr().out


async def test_reads_a_node_for_a_person(server: TestServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = await probe(capsys, "--url", server.url, "--node", "ns=2;s=Press.Temp")
    assert code == 0, out
    assert "ns=2;s=Press.Temp" in out
    assert "value:        21.5  [Double]" in out
    assert "status:       Good" in out
    assert "source time:  20" in out and "server time:  20" in out
    assert "in a frame:   21.5" in out


async def test_json_shows_value_type_status_and_decoding(server: TestServer,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out = await probe(capsys, "--url", server.url, "--node", "ns=2;s=Press.Count",
                            "--node", "ns=2;s=Press.NaN", "--node", "ns=2;s=Press.Missing", "--json")
    assert code == 1
    report = json.loads(out)
    count, nan, missing = report["nodes"]
    assert (count["value"], count["data_type"], count["status"], count["carried"]) == (7, "Int32", "Good", 7)
    assert count["source_timestamp"].endswith("Z") and count["problem"] is None
    assert nan["carried"] is None and "not a finite number" in nan["problem"]
    assert missing["status"].startswith("BadNodeIdUnknown") and "BadNodeIdUnknown" in missing["problem"]


async def test_browse_lists_variables_with_their_node_ids(server: TestServer,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out = await probe(capsys, "--url", server.url, "--browse", "--depth", "2", "--json")
    assert code == 0
    tree = {item["path"]: item for item in json.loads(out)["browse"]}
    assert tree["Press/Temp"]["node_id"] == "ns=2;s=Press.Temp"
    assert tree["Press/Temp"]["class"] == "Variable" and tree["Press"]["class"] == "Object"
    code, out = await probe(capsys, "--url", server.url, "--browse")
    assert code == 0 and "Temp  [Variable]  ns=2;s=Press.Temp" in out


async def test_reads_nodes_by_name_from_the_config_file(server: TestServer, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(f"""
[edge]
id = "edge-1"

[[sources]]
kind = "opcua"
name = "press-1"
url = "{server.url}"

[[sources.nodes]]
name = "temp"
node_id = "ns=2;s=Press.Temp"

[[sources.nodes]]
name = "recipe"
node_id = "nsu=urn:twinedge:test;s=Press.Recipe"
""", encoding="utf-8")
    code, out = await probe(capsys, "--config", str(path), "--source", "press-1", "--node", "recipe", "--json")
    assert code == 0
    [recipe] = json.loads(out)["nodes"]
    assert (recipe["name"], recipe["carried"], recipe["device_id"]) == ("recipe", "A-17", "press-1")
    code, out = await probe(capsys, "--config", str(path), "--source", "press-1", "--node", "nope")
    assert code == 78 and "source 'press-1' has no node named 'nope'" in out
    code, out = await probe(capsys, "--config", str(path), "--source", "other")
    assert code == 78 and "no opcua source named 'other' (opcua sources: 'press-1')" in out


@pytest.mark.parametrize(("argv", "expected"), [
    (["--url", "opc.tcp://127.0.0.1:4840", "--node", "Press.Temp"], "--node[0].node_id: not an OPC-UA node id"),
    (["--url", "http://x", "--node", "i=1"], "url: expected 'opc.tcp://host:port'"),
    (["--node", "i=1"], "give --url"),
    (["--url", "opc.tcp://127.0.0.1:4840"], "give at least one --node, or --browse"),
    (["--url", "opc.tcp://127.0.0.1:4840", "--browse", "Objects"], "--browse 'Objects': not an OPC-UA node id"),
    (["--config", "edge.toml"], "--config needs --source NAME"),
    (["--url", "opc.tcp://127.0.0.1:4840", "--node", "i=1", "--timeout", "5"], "--timeout: expected a duration"),
])
async def test_usage_mistakes_exit_78_with_a_message(argv: list[str], expected: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, out = await probe(capsys, *argv)
    assert code == 78
    assert expected in out, out


async def test_unreachable_server_exits_2_in_plain_words(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"opc.tcp://127.0.0.1:{free_port()}"
    code, out = await probe(capsys, "--url", url, "--node", "i=2258", "--json")
    assert code == 2
    assert json.loads(out) == {"error": f"OPC-UA server {url} refused the connection "
                                        "(is the server running, is the port right?)"}
