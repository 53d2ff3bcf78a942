"""Config errors are one line per problem, with key path, value, line and suggestion."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import GatewayConfig
from shared.configbase import ConfigFileError, load_config, parse_bytes, parse_duration


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "seconds"), [("100ms", 0.1), ("1.5s", 1.5), ("2m", 120.0), ("1h", 3600.0), ("250us", 0.00025)]
)
def test_durations_carry_their_unit(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["10", "1 parsec", "-1s", "s"])
def test_bad_durations_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_sizes() -> None:
    assert parse_bytes("512MB") == 512_000_000
    assert parse_bytes("1GiB") == 1024**3
    with pytest.raises(ValueError, match="size"):
        parse_bytes("many")


def test_every_problem_is_reported_with_path_value_and_suggestion(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[edge]\nid = "line-1"\n\n[store]\nbatch_max_delay = 50\ndisk_budgt = "1GB"\nbatch_max_frames = 0\n',
    )
    with pytest.raises(ConfigFileError) as err:
        load_config(path, GatewayConfig)
    lines = err.value.lines
    assert "line 5: store.batch_max_delay: give the unit, e.g. '50s' or '50ms' (got 50)" in lines
    assert "line 6: store.disk_budgt: unknown key; did you mean 'disk_budget'?" in lines
    assert any(line.startswith("line 7: store.batch_max_frames:") and "(got 0)" in line for line in lines)
    assert len(lines) == 3


def test_broken_toml_and_missing_file_are_plain_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="not valid TOML"):
        load_config(write(tmp_path, "[edge\nid="), GatewayConfig)
    with pytest.raises(ConfigFileError, match="file not found"):
        load_config(tmp_path / "nope.toml", GatewayConfig)


def test_unknown_source_kind_names_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path, '[edge]\nid = "e1"\n[[sources]]\nkind = "profibus"\nname = "x"\n')
    with pytest.raises(ConfigFileError) as err:
        load_config(path, GatewayConfig)
    assert err.value.lines == [
        "sources[0]: unknown 'kind' 'profibus'; expected one of 'modbus', 'opcua', 'mtconnect', 'programs'"]


@pytest.mark.parametrize("text", [
    '[edge]\nid = "e1"\n[uplink]\nurl = "https://c.example"\ntoken = "SUPERSECRET-1"\ntoken_file = "/etc/t"\n',
    '[edge]\nid = "e1"\n[mqtt_client]\npassword = "SUPERSECRET-1"\n',
    '[edge]\nid = "e1"\n[uplink]\nurl = "https://c.example"\ntoken = ["SUPERSECRET-1"]\n',
])
def test_config_errors_never_show_a_secret(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigFileError) as caught:
        load_config(write(tmp_path, text), GatewayConfig)
    assert caught.value.lines  # the problem is named ...
    assert "SUPERSECRET" not in caught.value.report()  # ... without the secret in a journal line
