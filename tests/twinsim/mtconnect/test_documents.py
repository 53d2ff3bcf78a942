"""The agent's XML in every schema version, checked with a plain XML parser (not the edge's): root
element and namespace, and the Header attributes a client relies on."""

from __future__ import annotations

import asyncio
import math
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator

import httpx
import pytest

from edge.sources.mtconnect.protocol import AgentErrors, Streams, parse_assets, parse_streams
from twinsim.mtconnect import VERSIONS, AgentSettings, MTConnectAgent

SERVED = ["1.3", "1.7", "2.0", "2.5", "2.6"]


@pytest.fixture(params=SERVED)
async def served(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, httpx.AsyncClient, MTConnectAgent]]:
    settings = AgentSettings(speed=math.inf, buffer_size=4096, instance_id=77, version=request.param)
    async with MTConnectAgent(settings) as agent, httpx.AsyncClient(base_url=agent.url) as client:
        async with asyncio.timeout(60):
            await agent.replay_done.wait()
        yield request.param, client, agent


def _root(body: bytes, kind: str, version: str) -> ET.Element:
    root = ET.fromstring(body)
    assert root.tag == f"{{urn:mtconnect.org:MTConnect{kind}:{version}}}MTConnect{kind}"
    return root


def _header(root: ET.Element) -> dict[str, str]:
    ns = root.tag.partition("}")[0] + "}"
    header = root.find(ns + "Header")
    assert header is not None
    return dict(header.attrib)


async def test_streams_documents_have_the_header_a_client_relies_on(
        served: tuple[str, httpx.AsyncClient, MTConnectAgent]) -> None:
    version, client, agent = served
    for params in ({"from": agent.buffer.first_sequence, "count": 50}, {}):
        path = "/sample" if params else "/current"
        response = await client.get(path, params=params)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/xml")
        h = _header(_root(response.content, "Streams", version))
        assert h["instanceId"] == "77" and h["bufferSize"] == "4096"
        first, last, nxt = int(h["firstSequence"]), int(h["lastSequence"]), int(h["nextSequence"])
        assert (first, last) == (agent.buffer.first_sequence, agent.buffer.last_sequence)
        assert last - first + 1 == 4096
        assert nxt == (first + 50 if params else last + 1)
        assert h["version"].startswith(version + ".")
        assert "creationTime" in h and "sender" in h
    doc = parse_streams(response.content)
    assert isinstance(doc, Streams) and doc.header.version == f"{version}.0.0"


async def test_probe_and_assets_documents_in_each_version(
        served: tuple[str, httpx.AsyncClient, MTConnectAgent]) -> None:
    version, client, agent = served
    probe = _root((await client.get("/probe")).content, "Devices", version)
    h = _header(probe)
    assert (h["instanceId"], h["bufferSize"], h["assetBufferSize"]) == ("77", "4096", "1024")
    ns = probe.tag.partition("}")[0] + "}"
    assert [d.get("name") for d in probe.iter(ns + "Device")] == ["OKUMA", "Mazak"]
    assets = await client.get("/assets")
    h = _header(_root(assets.content, "Assets", version))
    assert int(h["assetCount"]) == agent.assets.count
    parsed = parse_assets(assets.content)
    assert isinstance(parsed, tuple) and len(parsed) == min(agent.assets.count, 100)


async def test_error_documents_in_each_version(served: tuple[str, httpx.AsyncClient, MTConnectAgent]) -> None:
    version, client, agent = served
    response = await client.get("/sample", params={"from": 1})
    assert response.status_code == 400
    root = _root(response.content, "Error", version)
    ns = root.tag.partition("}")[0] + "}"
    if VERSIONS[version] >= (2, 6):
        code = root.find(f"{ns}Errors/{ns}OutOfRange/{ns}ErrorCode")
        assert code is not None and code.text == "OUT_OF_RANGE"
    else:
        error = root.find(f"{ns}Errors/{ns}Error")
        assert error is not None and error.get("errorCode") == "OUT_OF_RANGE"
    parsed = parse_streams(response.content)
    assert isinstance(parsed, AgentErrors)
    first = agent.buffer.first_sequence
    assert parsed.errors == (("OUT_OF_RANGE", f"'from' must be greater than or equal to {first}"),)


async def test_data_sets_conditions_and_unavailable_values_render_as_mtconnect_elements() -> None:
    settings = AgentSettings(speed=math.inf, paused=True, version="2.0")
    async with MTConnectAgent(settings) as agent, httpx.AsyncClient(base_url=agent.url) as client:
        first = agent.inject("2022-08-08T13:51:34Z|p1CommonVariable|1=-1.123 4=3.123 5|system|FAULT|2041|3|HIGH|"
                             "SPINDLE <OVERLOAD> & more|p1block|G01 X1 \"Z2\"")[0].sequence
        body = (await client.get("/sample", params={"from": first})).text
        assert '<Variable dataItemId="Lp1CommonVariable"' in body and 'count="3"' in body
        assert '<Entry key="1">-1.123</Entry><Entry key="4">3.123</Entry><Entry key="5" removed="true"/>' in body
        fault = 'nativeCode="2041" nativeSeverity="3" qualifier="HIGH">SPINDLE &lt;OVERLOAD&gt; &amp; more</Fault>'
        assert fault in body
        doc = parse_streams(body.encode())
        assert isinstance(doc, Streams)
        assert [o.value for o in doc.observations] == ["1=-1.123 4=3.123 5", "FAULT", 'G01 X1 "Z2"']
        unavailable = (await client.get("/sample", params={"from": 1, "count": 1})).text
        assert ">UNAVAILABLE</" in unavailable
