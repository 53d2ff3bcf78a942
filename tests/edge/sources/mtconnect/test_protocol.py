"""MTConnect documents: the shared Okuma device model, streams in the 1.3, 1.7 and 2.5 namespaces, error
documents of both forms, assets, and malformed or hostile documents refused with a plain ProtocolError."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.sources.mtconnect.protocol import (
    MAX_DOCUMENT_BYTES,
    AgentErrors,
    Asset,
    Condition,
    Probe,
    ProtocolError,
    Streams,
    parse_assets,
    parse_probe,
    parse_streams,
)

DATA = Path(__file__).parent / "data"
DEVICES_XML = Path(__file__).parents[4] / "twinsim" / "data" / "mtconnect" / "Devices.xml"


def _read(name: str) -> bytes:
    return (DATA / name).read_bytes()


def _streams(doc: bytes) -> Streams:
    result = parse_streams(doc)
    assert isinstance(result, Streams), result
    return result


# --- probe ---


def test_the_okuma_device_model_gives_every_data_item_with_category_type_and_units() -> None:
    probe = parse_probe(DEVICES_XML.read_bytes())
    assert isinstance(probe, Probe)
    assert probe.header.instance_id == 1
    assert probe.header.buffer_size == 131072
    assert probe.header.asset_buffer_size == 1024
    assert [(d.name, d.uuid, len(d.items)) for d in probe.devices] == [("OKUMA", "OKUMA.123456", 100),
                                                                        ("Mazak", "Mazak", 116)]
    okuma = {i.id: i for i in probe.devices[0].items}
    cats = [i.category for i in okuma.values()]
    assert (cats.count("SAMPLE"), cats.count("EVENT"), cats.count("CONDITION")) == (45, 45, 10)
    execution = okuma["Lpexecution"]
    assert (execution.name, execution.category, execution.type) == ("pexecution", "EVENT", "EXECUTION")
    assert execution.device_uuid == "OKUMA.123456" and execution.device_name == "OKUMA"
    assert execution.component == "Controller" and okuma["Lp1block"].component == "Controller/Path"
    s1 = okuma["LS1speed"]
    assert (s1.category, s1.type, s1.sub_type, s1.units) == ("SAMPLE", "ROTARY_VELOCITY", "ACTUAL",
                                                              "REVOLUTION/MINUTE")
    assert okuma["Lsystem"].category == "CONDITION" and okuma["Lsystem"].name == "system"
    assert okuma["Lavail"].component == "Device"


def test_a_1_3_probe_reads_nested_components() -> None:
    probe = parse_probe(_read("probe-1.3.xml"))
    assert isinstance(probe, Probe)
    assert probe.header.instance_id == 1455204522 and probe.header.version == "1.3.0.18"
    (device,) = probe.devices
    assert (device.uuid, device.name) == ("HAAS-VF2-0042", "VF2")
    by_id = {i.id: i for i in device.items}
    assert by_id["Sspeed"].component == "Axes/Rotary"
    assert by_id["Xact"].component == "Controller/Path"
    assert (by_id["Xact"].units, by_id["Xact"].native_units) == ("MILLIMETER", "INCH")
    assert by_id["system"].component == "Controller" and by_id["system"].name is None
    assert by_id["d1_asset_chg"].type == "ASSET_CHANGED"


def test_a_probe_with_a_data_item_id_twice_is_refused() -> None:
    doc = _read("probe-1.3.xml").replace(b'id="Xact"', b'id="execution"')
    with pytest.raises(ProtocolError, match="'execution' appears twice"):
        parse_probe(doc)


def test_a_probe_with_an_unknown_category_is_refused() -> None:
    doc = _read("probe-1.3.xml").replace(b'category="SAMPLE" id="Xact"', b'category="BOGUS" id="Xact"')
    with pytest.raises(ProtocolError, match="category 'BOGUS'"):
        parse_probe(doc)


# --- streams in three namespaces ---


def test_a_1_3_sample_document_gives_values_units_of_meaning_and_conditions() -> None:
    s = _streams(_read("streams-1.3.xml"))
    assert (s.header.instance_id, s.header.first_sequence, s.header.last_sequence, s.header.next_sequence) == (
        1659966700, 1, 1289, 1290)
    assert [o.sequence for o in s.observations] == sorted(o.sequence for o in s.observations)
    by_seq = {o.sequence: o for o in s.observations}
    speed = by_seq[1201]
    assert (speed.item_id, speed.value, speed.category, speed.element) == ("LS1speed", 1200.5, "SAMPLE",
                                                                             "RotaryVelocity")
    assert speed.timestamp == pytest.approx(1659966700.123456, abs=1e-6)  # 7 digits read as microseconds
    assert speed.device_uuid == "OKUMA.123456"
    assert by_seq[1198].value is None  # UNAVAILABLE: no value, not a zero
    assert by_seq[1205].value == "1039.897 0 269.0133"  # a vector stays text
    assert by_seq[1200].value == "ACTIVE" and by_seq[33].value == "0"  # EVENTs are text
    fault = by_seq[1289]
    assert fault.category == "CONDITION" and fault.value == "FAULT" and fault.element == "Fault"
    assert fault.condition == Condition("FAULT", "2041", "3", "HIGH", "SPINDLE OVERLOAD")
    assert by_seq[1288].condition == Condition("WARNING", "1107", None, None, "LOW LUBRICANT")
    assert by_seq[40].condition == Condition("NORMAL", None, None, None, None)
    assert by_seq[41].value is None and by_seq[41].condition is not None
    assert by_seq[41].condition.level == "UNAVAILABLE"


def test_a_1_7_document_with_the_agent_device_and_asset_events() -> None:
    s = _streams(_read("streams-1.7.xml"))
    assert (s.header.buffer_size, s.header.first_sequence) == (1024, 1026)
    assert [o.sequence for o in s.observations] == [1026, 1027, 2048, 2049]
    changed = s.observations[-1]
    assert (changed.element, changed.value, changed.category) == ("AssetChanged", "123456.2201", "EVENT")
    assert s.observations[1].value is None  # AssetRemoved UNAVAILABLE
    assert s.observations[0].device_uuid == "0b49a3a0-18ca-0139-8748-2cde48001122"


def test_a_2_5_document_with_a_data_set() -> None:
    s = _streams(_read("streams-2.5.xml"))
    assert s.header.version == "2.5.0.0"
    values = {o.item_id: o.value for o in s.observations}
    assert values["Lp1CommonVariable"] == "1=-1.123 4=3.123 5"
    assert values["Lp1Fact"] == 0.0
    assert values["Lp1block"] == "G00 X1039.897 Z269.0133"
    assert values["Lpexecution"] == "PROGRAM_COMPLETED"


def test_an_empty_streams_document_is_a_heartbeat() -> None:
    doc = (b'<MTConnectStreams xmlns="urn:mtconnect.org:MTConnectStreams:2.0"><Header instanceId="5" '
           b'firstSequence="1" lastSequence="9" nextSequence="10" bufferSize="16"/><Streams/></MTConnectStreams>')
    s = _streams(doc)
    assert s.observations == () and s.header.next_sequence == 10


# --- errors ---


def test_an_out_of_range_error_document_1_3() -> None:
    result = parse_streams(_read("error-1.3-out-of-range.xml"))
    assert isinstance(result, AgentErrors)
    assert result.errors == (("OUT_OF_RANGE", "'from' must be greater than 1025"),)
    assert result.header is not None and result.header.instance_id == 1659966700


def test_the_2_6_error_form_with_several_errors() -> None:
    result = parse_streams(_read("error-2.6-invalid-request.xml"))
    assert isinstance(result, AgentErrors)
    assert result.errors == (
        ("INVALID_REQUEST", "query parameter 'count': cannot convert string 'abc' to integer"),
        ("OUT_OF_RANGE", "'from' must be greater than 1025"),
    )


def test_an_error_document_answers_a_probe_and_an_asset_request_too() -> None:
    doc = (b'<MTConnectError xmlns="urn:mtconnect.org:MTConnectError:1.7"><Header instanceId="3"/><Errors>'
           b'<Error errorCode="ASSET_NOT_FOUND">Cannot find asset: 9</Error></Errors></MTConnectError>')
    probe = parse_probe(doc)
    assert isinstance(probe, AgentErrors) and probe.header is not None and probe.header.instance_id == 3
    assert parse_assets(doc) == AgentErrors(probe.header, (("ASSET_NOT_FOUND", "Cannot find asset: 9"),))


def test_an_error_document_without_errors_is_refused() -> None:
    doc = b'<MTConnectError xmlns="urn:mtconnect.org:MTConnectError:1.3"><Header instanceId="3"/></MTConnectError>'
    with pytest.raises(ProtocolError, match="lists no error"):
        parse_streams(doc)


# --- assets ---


def test_assets_come_with_their_xml_without_namespaces() -> None:
    assets = parse_assets(_read("assets-1.3.xml"))
    assert isinstance(assets, tuple)
    first, removed = assets
    assert first == Asset(asset_type="CuttingTool", asset_id="123456.2201", device_uuid="OKUMA.123456",
                          timestamp="2022-08-08T13:43:36.081079Z", removed=False, xml=first.xml)
    assert first.xml.startswith('<CuttingTool toolId="123456" serialNumber="2201" assetId="123456.2201"')
    assert "<ProgramToolNumber>2201</ProgramToolNumber>" in first.xml and "ns0" not in first.xml
    assert removed.removed and removed.asset_id == "123456.20"


# --- malformed and hostile ---

_STREAMS_HEAD = b'<MTConnectStreams xmlns="urn:mtconnect.org:MTConnectStreams:1.3">'


def _doc(header: bytes = b'instanceId="1"', body: bytes = b"") -> bytes:
    return _STREAMS_HEAD + b"<Header " + header + b"/><Streams>" + body + b"</Streams></MTConnectStreams>"


def _obs(attrs: bytes, value: bytes = b"1") -> bytes:
    return (b'<DeviceStream name="d" uuid="u"><ComponentStream component="Device"><Samples><Load ' + attrs + b">"
            + value + b"</Load></Samples></ComponentStream></DeviceStream>")


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<MTConnectStreams xmlns="urn:mtconnect.org:MTConnectStreams:1.3"><Header instanceId="1"/><Streams>
<DeviceStream name="d" uuid="u"><ComponentStream component="Device"><Events>
<Program dataItemId="p" sequence="1" timestamp="2022-01-01T00:00:00Z">&lol9;</Program>
</Events></ComponentStream></DeviceStream></Streams></MTConnectStreams>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE s [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<MTConnectStreams xmlns="urn:mtconnect.org:MTConnectStreams:1.3"><Header instanceId="1"/><Streams>
<DeviceStream name="d" uuid="u"><ComponentStream component="Device"><Events>
<Program dataItemId="p" sequence="1" timestamp="2022-01-01T00:00:00Z">&secret;</Program>
</Events></ComponentStream></DeviceStream></Streams></MTConnectStreams>"""

GOOD_OBS = b'dataItemId="x" sequence="5" timestamp="2022-01-01T00:00:00Z"'


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (BILLION_LAUGHS, "declares a DTD or entities"),
        (EXTERNAL_ENTITY, "declares a DTD or entities"),
        (b'<!DOCTYPE x SYSTEM "http://evil.example/x.dtd">' + _doc(), "declares a DTD"),
        (b"<html><body>502 Bad Gateway</body></html>", "not an MTConnect document: root <html> has no namespace"),
        (b'<MTConnectStreams xmlns="urn:example:Streams"><Header instanceId="1"/></MTConnectStreams>',
         "not an MTConnect document"),
        (b'<MTConnectStreams xmlns="urn:mtconnect.org:MTConnectStreams:3.0"><Header instanceId="1"/>'
         b"</MTConnectStreams>", "not an MTConnect document"),
        (DEVICES_XML.read_bytes(), "expected an MTConnectStreams document, got <MTConnectDevices>"),
        (b'<MTConnectStreams xmlns="urn:mtconnect.org:MTConnectDevices:1.3"><Header instanceId="1"/>'
         b"</MTConnectStreams>", "expected an MTConnectStreams document"),
        (_doc(b'firstSequence="1"'), "Header> has no instanceId"),
        (_STREAMS_HEAD + b"<Streams/></MTConnectStreams>", "has no Header"),
        (_doc(b'instanceId="abc"'), "instanceId must be a whole number"),
        (_doc(b'instanceId="1" nextSequence="12x"'), "nextSequence must be a whole number"),
        (_doc(b'instanceId="1" lastSequence="-4"'), "lastSequence is out of range"),
        (_doc(body=_obs(b'dataItemId="x" sequence="five" timestamp="2022-01-01T00:00:00Z"')),
         "sequence must be a whole number"),
        (_doc(body=_obs(b'dataItemId="x" sequence="1e3" timestamp="2022-01-01T00:00:00Z"')),
         "sequence must be a whole number"),
        (_doc(body=_obs(b'dataItemId="x" timestamp="2022-01-01T00:00:00Z"')), "has no sequence"),
        (_doc(body=_obs(b'dataItemId="x" sequence="1" timestamp="yesterday"')), "timestamp is not a date"),
        (_doc(body=_obs(b'sequence="1" timestamp="2022-01-01T00:00:00Z"')), "has no dataItemId"),
        (_doc(body=_obs(b'dataItemId="' + b"x" * 100_000 + b'" sequence="1" timestamp="2022-01-01T00:00:00Z"')),
         "dataItemId is 100,000 characters long"),
        (_doc(b'instanceId="1" sender="' + b"A" * 5_000_000 + b'"'), None),  # a huge attribute we do not read
        (_doc() + b"<trailing/>", "not well-formed"),
        (_doc()[:-10], "not well-formed"),
        (b"", "not well-formed"),
        (b"\xff\xfe<\x00M\x00", "not well-formed"),
        (b"x" * (MAX_DOCUMENT_BYTES + 1), "at most 33,554,432 are read"),
    ],
)
def test_a_malformed_or_hostile_streams_document_is_refused_in_plain_words(doc: bytes, message: str | None) -> None:
    if message is None:  # accepted: the attribute is not one we read, and the document is within the bound
        assert _streams(doc).header.instance_id == 1
        return
    with pytest.raises(ProtocolError, match=message):
        parse_streams(doc)


def test_a_condition_with_an_unknown_level_is_refused() -> None:
    body = (b'<DeviceStream name="d" uuid="u"><ComponentStream component="Device"><Condition><Panic '
            + GOOD_OBS + b"/></Condition></ComponentStream></DeviceStream>")
    with pytest.raises(ProtocolError, match="unknown level <Panic>"):
        parse_streams(_doc(body=body))


def test_a_deeply_nested_asset_is_refused_not_a_recursion_error() -> None:
    nested = b"<a>" * 5000 + b"</a>" * 5000
    doc = (b'<MTConnectAssets xmlns="urn:mtconnect.org:MTConnectAssets:1.3"><Header instanceId="1"/><Assets>'
           b'<CuttingTool assetId="t1">' + nested + b"</CuttingTool></Assets></MTConnectAssets>")
    with pytest.raises(ProtocolError, match="nests elements more than 64 deep"):
        parse_assets(doc)


def test_deeply_nested_components_are_refused() -> None:
    nested = b"<Components><Axes>" * 200 + b"</Axes></Components>" * 200
    doc = (b'<MTConnectDevices xmlns="urn:mtconnect.org:MTConnectDevices:1.3"><Header instanceId="1"/><Devices>'
           b'<Device uuid="u" name="d">' + nested + b"</Device></Devices></MTConnectDevices>")
    with pytest.raises(ProtocolError, match="nests components more than 64 deep"):
        parse_probe(doc)


def test_a_non_finite_sample_stays_text() -> None:
    s = _streams(_doc(body=_obs(GOOD_OBS, b"NaN")))
    assert s.observations[0].value == "NaN"


def test_a_stylesheet_instruction_and_comments_are_ignored() -> None:
    doc = (b'<?xml version="1.0" encoding="UTF-8"?>\n<?xml-stylesheet type="text/xsl" href="/styles/styles.xsl"?>\n'
           b"<!-- the reference agent 2.x puts a stylesheet first -->" + _doc(body=_obs(GOOD_OBS, b"4<!-- -->2")))
    s = _streams(doc)
    assert [(o.item_id, o.sequence, o.value) for o in s.observations] == [("x", 5, 42.0)]


def test_an_error_document_with_a_bad_header_still_gives_its_errors() -> None:
    doc = (b'<MTConnectError xmlns="urn:mtconnect.org:MTConnectError:1.3"><Header sender="x"/><Errors>'
           b'<Error errorCode="INVALID_REQUEST">bad</Error></Errors></MTConnectError>')
    assert parse_streams(doc) == AgentErrors(None, (("INVALID_REQUEST", "bad"),))


@pytest.mark.parametrize(("body", "message"), [
    (b"<a/>" * 2_000_001, "more than 2,000,000 elements"),  # 8 MB that would take about 200 MB parsed
    (b"<a>" * 10_001 + b"</a>" * 10_001, "nests elements more than 10,000 deep"),
])
def test_a_document_that_would_take_far_more_memory_than_its_size_is_refused(body: bytes, message: str) -> None:
    doc = (b'<MTConnectStreams xmlns="urn:mtconnect.org:MTConnectStreams:1.3"><Header instanceId="1"/><Streams>'
           + body + b"</Streams></MTConnectStreams>")
    with pytest.raises(ProtocolError, match=message):
        parse_streams(doc)


def test_a_probe_larger_than_a_real_device_model_is_refused_before_it_is_parsed() -> None:
    head = (b'<MTConnectDevices xmlns="urn:mtconnect.org:MTConnectDevices:2.0">'
            b'<Header creationTime="2026-01-01T00:00:00Z" instanceId="1" version="2.0" bufferSize="10"/>'
            b'<Devices><Device id="d" name="d" uuid="d"><DataItems>')
    items = b"".join(b'<DataItem id="a%07d" category="SAMPLE" type="X"/>' % i for i in range(200_000))
    doc = head + items + b"</DataItems></Device></Devices></MTConnectDevices>"  # 10 MB: hundreds of MB as a tree
    with pytest.raises(ProtocolError, match=r"the device model \(/probe\) is 10,[0-9,]+ bytes; at most 8,388,608"):
        parse_probe(doc)
