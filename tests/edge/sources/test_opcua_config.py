"""OPC-UA config and value decoding: what is accepted, what is refused, and the messages a person reads."""

from __future__ import annotations

import datetime
import math
import uuid
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from pydantic import ValidationError

from edge.config import load_gateway_config
from edge.render import render_sources
from edge.sources.opcua import OpcUaSourceConfig
from edge.sources.opcua.subscription import split_by_time
from edge.sources.opcua.values import decode_data_value, decode_variant, pick_timestamp
from shared.configbase import ConfigFileError, format_validation_error

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "examples" / "opcua.toml"


def base(**extra: Any) -> dict[str, Any]:
    return {"kind": "opcua", "name": "press-1", "url": "opc.tcp://10.0.0.9:4840",
            "nodes": [{"name": "temp", "node_id": "ns=2;s=Press.Temp"}], **extra}


def errors_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        OpcUaSourceConfig.model_validate(data)
    return format_validation_error(info.value, OpcUaSourceConfig)


def test_sample_config_loads() -> None:
    config = load_gateway_config(EXAMPLE)
    kinds = {(s.kind, s.name) for s in config.sources}
    assert kinds == {("opcua", "press-7"), ("opcua", "oven-2")}
    press = config.sources[0]
    assert isinstance(press, OpcUaSourceConfig)
    assert press.security.policy == "Basic256Sha256" and press.publishing_interval == 0.5
    assert press.sampling_interval == 0.0 and press.queue_size == 20  # every change, none lost in a cycle


@pytest.mark.parametrize("node_id", [
    "ns=2;s=Press.Temp", "i=2258", "ns=3;i=4294967295", "nsu=urn:acme:plc;s=Line1.Speed",
    "g=09087e75-8e5e-499b-954f-f2a9603db28a", "ns=1;b=M/RbKBsRVkePCePcx24oRA==", "ns=2;s=a;b=c",
])
def test_well_formed_node_ids_are_accepted(node_id: str) -> None:
    config = OpcUaSourceConfig.model_validate(base(nodes=[{"name": "x", "node_id": node_id}]))
    assert config.nodes[0].node_id == node_id


@pytest.mark.parametrize("node_id", [
    "Press.Temp", "ns=2;Press.Temp", "ns=2;s=", "ns=x;i=1", "ns=2;i=abc", "ns=70000;i=1", "i=4294967296",
    "g=not-a-guid", "ns=2;q=1", "", "ns=2;i=1;i=2",
])
def test_malformed_node_ids_are_config_errors_naming_the_key(node_id: str) -> None:
    lines = errors_of(base(nodes=[{"name": "x", "node_id": node_id}]))
    assert len(lines) == 1 and lines[0].startswith("nodes[0].node_id: ")
    assert "node id" in lines[0] or "must be" in lines[0] or "identifier" in lines[0]


@pytest.mark.parametrize(("extra", "expected"), [
    ({"url": "http://10.0.0.9:4840"}, "url: expected 'opc.tcp://host:port'"),
    ({"url": "opc.tcp://user:pw@10.0.0.9:4840"}, "url: put the user name and password"),
    ({"url": "opc.tcp://10.0.0.9:99999"}, "url: the port must be a number"),
    ({"username": "edge"}, "needs 'password_file'"),
    ({"password": "x"}, "a password was given without 'username'"),
    ({"username": "e", "password": "x", "password_file": "/p"}, "either 'password' or 'password_file'"),
    ({"security": {"policy": "Basic256Sha256"}}, "needs 'certificate' and 'private_key'"),
    ({"security": {"policy": "None", "certificate": "/c"}}, "only used with policy 'Basic256Sha256'"),
    ({"security": {"policy": "Basic128Rsa15"}}, "security.policy: "),
    ({"publishing_interval": 1}, "publishing_interval: give the unit"),
    ({"publishing_interval": "1ms"}, "publishing_interval: "),
    ({"max_items_per_call": 0}, "max_items_per_call: "),
    ({"mode": "stream"}, "mode: "),
    ({"nodes": []}, "nodes: "),
    ({"pubishing_interval": "1s"}, "did you mean 'publishing_interval'?"),
    ({"nodes": [{"name": "t", "node_id": "i=1"}, {"name": "t", "node_id": "i=2"}]}, "two nodes are named 't'"),
    ({"nodes": [{"name": "t", "node_id": "i=1", "deadband": 150, "deadband_type": "percent"}]}, "0..100"),
    ({"nodes": [{"name": "bad name", "node_id": "i=1"}]}, "nodes[0].name: "),
    ({"nodes": [{"name": f"n{i}", "node_id": "i=1"} for i in range(513)]}, "a frame holds at most 512"),
])
def test_config_mistakes_are_explained(extra: dict[str, Any], expected: str) -> None:
    lines = errors_of(base(**extra))
    assert any(expected in line for line in lines), lines


def test_a_source_may_spread_nodes_over_devices() -> None:
    nodes = [{"name": f"n{i}", "node_id": "i=1", "device_id": f"dev-{i % 2}"} for i in range(1000)]
    config = OpcUaSourceConfig.model_validate(base(nodes=nodes))
    assert len(config.nodes) == 1000


def test_a_malformed_node_id_in_a_file_names_the_file_line(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text('[edge]\nid = "e1"\n\n[[sources]]\nkind = "opcua"\nname = "p"\nurl = "opc.tcp://h:4840"\n'
                    '[[sources.nodes]]\nname = "t"\nnode_id = "ns=2;Temp"\n', encoding="utf-8")
    with pytest.raises(ConfigFileError) as info:
        load_gateway_config(path)
    assert info.value.lines == [
        "line 10: sources[0].nodes[0].node_id: not an OPC-UA node id; write it like 'ns=2;s=Press.Temp', "
        "'ns=3;i=1001' or 'nsu=urn:acme:plc;s=Line1.Speed' (got 'ns=2;Temp')"
    ]


# --- value decoding -----------------------------------------------------------------

@pytest.mark.parametrize(("variant", "expected"), [
    (ua.Variant(21.5, ua.VariantType.Double), 21.5),
    (ua.Variant(-3, ua.VariantType.Int16), -3),
    (ua.Variant(2**64 - 1, ua.VariantType.UInt64), 2**64 - 1),
    (ua.Variant(True, ua.VariantType.Boolean), True),
    (ua.Variant("A-17", ua.VariantType.String), "A-17"),
    (ua.Variant(ua.LocalizedText("Auto", "en"), ua.VariantType.LocalizedText), "Auto"),
    (ua.Variant(datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC), ua.VariantType.DateTime), 1767225600.0),
    (ua.Variant(uuid.UUID(int=1), ua.VariantType.Guid), "00000000-0000-0000-0000-000000000001"),
    (ua.Variant(ua.StatusCode(0), ua.VariantType.StatusCode), 0),
])
def test_representable_values_are_carried(variant: ua.Variant, expected: Any) -> None:
    assert decode_variant(variant) == (expected, None)


@pytest.mark.parametrize(("variant", "reason"), [
    (ua.Variant(math.nan, ua.VariantType.Double), "not a finite number"),
    (ua.Variant(-math.inf, ua.VariantType.Float), "not a finite number"),
    (ua.Variant([1, 2], ua.VariantType.Int32), "an array of 2 values"),
    (ua.Variant([], ua.VariantType.Int32), "an array of 0 values"),
    (ua.Variant("x" * 257, ua.VariantType.String), "text of 257 characters"),
    (ua.Variant(b"\x00\x01", ua.VariantType.ByteString), "binary data"),
    (ua.Variant(ua.Argument(Name="a"), ua.VariantType.ExtensionObject), "a structure (Argument)"),
    (ua.Variant(ua.NodeId(5, 2), ua.VariantType.NodeId), "a value of type NodeId"),
    (ua.Variant(None, ua.VariantType.Null), "no value"),
    (None, "no value"),
])
def test_unrepresentable_values_are_refused_with_a_reason(variant: ua.Variant | None, reason: str) -> None:
    value, problem = decode_variant(variant)
    assert value is None and problem is not None and reason in problem


def test_bad_and_uncertain_status_give_no_value() -> None:
    for code in (ua.StatusCodes.BadSensorFailure, ua.StatusCodes.UncertainLastUsableValue):
        dv = ua.DataValue(ua.Variant(1.0, ua.VariantType.Double), StatusCode=ua.StatusCode(code))
        value, problem, _ = decode_data_value(dv)
        assert value is None and problem is not None and ua.StatusCode(code).name in problem


def test_source_timestamp_first_then_server_timestamp() -> None:
    src = datetime.datetime(2026, 5, 1, tzinfo=datetime.UTC)
    srv = datetime.datetime(2026, 5, 2, tzinfo=datetime.UTC)
    assert pick_timestamp(ua.DataValue(1.0, SourceTimestamp=src, ServerTimestamp=srv)) == src.timestamp()
    assert pick_timestamp(ua.DataValue(1.0, ServerTimestamp=srv)) == srv.timestamp()
    ancient = datetime.datetime(1601, 1, 1, tzinfo=datetime.UTC)  # a PLC that never set its clock
    assert pick_timestamp(ua.DataValue(1.0, SourceTimestamp=ancient, ServerTimestamp=srv)) == srv.timestamp()
    assert pick_timestamp(ua.DataValue(1.0)) is None


def test_several_queued_values_of_a_node_spread_over_frames_in_time_order() -> None:
    # one publish: count changed three times (the server's queue), temp once
    entries = [(10.0, "count", 1), (10.1, "count", 2), (10.05, "temp", 20.5), (10.2, "count", 3)]
    assert split_by_time(entries) == [
        ({"count": 1, "temp": 20.5}, 10.05),  # a frame's time is the newest of its values
        ({"count": 2}, 10.1),
        ({"count": 3}, 10.2),
    ]
    assert split_by_time([(10.0, "count", 1), (None, "temp", 2.5)]) == [({"count": 1, "temp": 2.5}, 10.0)]


def test_a_long_reason_wraps_under_its_column_within_100_columns() -> None:
    reason = ("OPC-UA server opc.tcp://10.0.0.9:4840 rejected our certificate (subject O=twinedge,CN=twinedge "
              "press-7@edge-hall-2, SHA-1 thumbprint c0780885bb2e55be2fb0a5d26d58659e6c9527d7); trust "
              "/etc/twinedge/pki/press.pem on the PLC (servers list it among their rejected certificates), then "
              "the gateway reconnects by itself")
    sources = [{"name": "press-7", "kind": "opcua", "state": "disconnected", "last_success": None, "frames": 0,
                "errors": 3, "reason": reason, "retry_at": None},
               {"name": "oven", "kind": "modbus", "state": "connected", "last_success": None, "frames": 5,
                "errors": 0, "reason": None}]
    table = render_sources(sources).splitlines()
    assert max(len(line) for line in table) <= 100
    column = table[0].index("REASON")
    wrapped = [line[column:] for line in table[2:-1]]
    assert " ".join(wrapped) == reason, "every word of the reason is shown, in order, under its column"
    assert table[-1].startswith("oven")
