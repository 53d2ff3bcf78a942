"""The broker config models: the sample loads, and mistakes are refused with a readable message."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from edge.broker.config import BrokerConfig, ListenerConfig, MqttClientConfig
from edge.broker.guard import connection_limits
from edge.config import load_gateway_config

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "examples" / "mqtt.toml"


def test_the_sample_config_loads() -> None:
    config = load_gateway_config(EXAMPLE)
    assert [x.name for x in config.broker.listeners] == ["plant", "tls"]
    assert config.broker.session_expiry == 168 * 3600
    assert config.broker.acl is not None and config.broker.acl[0].publish == ["twin/%u/telemetry"]


def test_defaults_are_local_and_closed() -> None:
    config = BrokerConfig(password_file=Path("p"))
    assert [(x.host, x.port, x.tls) for x in config.listeners] == [("127.0.0.1", 1883, False)]
    assert config.allow_anonymous is False


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "set password_file, or allow_anonymous"),
        ({"allow_anonymous": True, "listeners": [{"name": "a", "tls": True}]}, "needs certfile and keyfile"),
        ({"allow_anonymous": True, "listeners": [{"name": "a"}, {"name": "a", "port": 2}]}, "share a name"),
        ({"allow_anonymous": True, "listeners": []}, "at least 1"),
        ({"allow_anonymous": True, "max_payload": "1GB"}, "less than or equal"),
    ],
)
def test_broker_config_mistakes(values: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BrokerConfig.model_validate(values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"qos": 2}, "Input should be 0 or 1"),
        ({"password": "x"}, "a password needs a username"),
        ({"username": "u", "password": "x", "password_file": "f"}, "not both"),
        ({"cafile": "ca.pem"}, "only used with tls"),
        ({"keepalive": 30}, "give the unit"),
    ],
)
def test_client_config_mistakes(values: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        MqttClientConfig.model_validate(values)


def test_listener_names_are_simple() -> None:
    with pytest.raises(ValidationError):
        ListenerConfig(name="Bad Name")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"max_packet_size": "100kB"}, "must leave room for a max_payload message and its topic"),
        ({"connect_timeout": "0s"}, "greater than or equal to 0.1"),
        ({"acl": [{"username": "u", "deny_subscribe": ["a/#/b"]}]}, r"deny_subscribe\[0\]: 'a/#/b' is not an MQTT"),
        ({"acl": [{"username": "u", "publish": ["a+"]}]}, r"publish\[0\]: 'a\+' is not an MQTT topic filter"),
        ({"listeners": [{"name": "a", "max_connections": 0}]}, "greater than or equal to 1"),
    ],
)
def test_limits_and_deny_entries_are_checked(values: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BrokerConfig.model_validate({"allow_anonymous": True, **values})


def test_the_packet_limit_follows_max_payload_unless_set() -> None:
    assert BrokerConfig(allow_anonymous=True).packet_limit == 512 * 1024
    assert BrokerConfig(allow_anonymous=True, max_payload="1MiB").packet_limit == 1024 * 1024 + 64 * 1024
    assert BrokerConfig(allow_anonymous=True, max_packet_size="300kB").packet_limit == 300_000
    assert BrokerConfig(allow_anonymous=True).connect_timeout == 10.0


def test_connection_limits_leave_descriptors_for_the_rest_of_the_daemon() -> None:
    unit = (EXAMPLE.parents[2] / "systemd" / "twinedge.service").read_text(encoding="utf-8")
    files = int(next(line for line in unit.splitlines() if line.startswith("LimitNOFILE=")).partition("=")[2])
    # The unit's limit gives two listeners their default of 1000 connections each.
    limits, why, lowered = connection_limits([("plant", None), ("tls", None)], files=files)
    assert (limits, lowered) == ({"plant": 1000, "tls": 1000}, False)
    # A service's default of 1024: well below it, and a configured limit that does not fit is lowered.
    limits, why, lowered = connection_limits([("plant", None)], files=1024)
    assert (limits, lowered) == ({"plant": 768}, False)
    assert "may open 1024 files; 256 are kept" in why
    limits, _, lowered = connection_limits([("plant", 5000), ("tls", 200)], files=1024)
    assert lowered and sum(limits.values()) <= 768 and limits["plant"] > limits["tls"]


def test_a_configured_connection_limit_is_kept_and_the_others_share_the_rest() -> None:
    limits, _, lowered = connection_limits([("plant", None), ("sensors", 50), ("tls", None)], files=1024)
    assert (limits, lowered) == ({"plant": 359, "sensors": 50, "tls": 359}, False)
