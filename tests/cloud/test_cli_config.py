"""`twincloud` commands (tokens, migrate, check-config) and the config file: errors, env override, secrets."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from cloud.cli import EX_CONFIG, main
from cloud.config import DATABASE_URL_ENV, ConfigFileError, load_cloud_config, redact_url
from cloud.migrations import latest_version


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "cloud.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "c.db"}"\n', encoding="utf-8")
    return path


def test_edge_and_user_tokens_from_the_command_line(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(config), "edge", "add", "line-1"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("twe_") and len(token) > 40
    assert main(["--config", str(config), "user", "add", "ann", "--role", "operator"]) == 0
    assert capsys.readouterr().out.startswith("twu_")
    assert main(["--config", str(config), "edge", "add", "line-1"]) == 1
    assert "exists already" in capsys.readouterr().err
    assert main(["--config", str(config), "edge", "token", "line-1"]) == 0
    assert capsys.readouterr().out.strip() != token
    assert main(["--config", str(config), "user", "revoke", "ann"]) == 0
    assert main(["--config", str(config), "user", "list"]) == 0
    assert "ann" in capsys.readouterr().out.split("revoked")[0]
    assert main(["--config", str(config), "user", "revoke", "nobody"]) == 1
    assert main(["--config", str(config), "edge", "add", "bad name!"]) == 1


def test_migrate_reports_the_schema_version(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(config), "migrate"]) == 0
    assert f"schema version {latest_version()}" in capsys.readouterr().out


def test_a_bad_config_exits_78_with_the_key_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nprot = 80\n[sync]\nmax_concurrent = 0\n[database]\nurl = "mysql://x"\n',
                   encoding="utf-8")
    assert main(["check-config", str(bad)]) == EX_CONFIG
    err = capsys.readouterr().err
    assert "server.prot: unknown key; did you mean 'port'?" in err
    assert "sync.max_concurrent" in err and "database.url" in err
    assert main(["--config", str(tmp_path / "missing.toml"), "migrate"]) == EX_CONFIG


def test_the_database_url_from_the_environment_wins_and_is_never_shown(
        config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, "postgresql://cloud:s3cret@db.example:5432/twin")
    loaded = load_cloud_config(config)
    assert loaded.database.backend == "postgres"
    assert "s3cret" not in repr(loaded) and "s3cret" not in str(loaded.model_dump())
    caplog.set_level(logging.DEBUG)
    assert main(["check-config", str(config), "--json"]) == 0
    out = capsys.readouterr().out
    assert "s3cret" not in out and "cloud:***@db.example" in out
    monkeypatch.setenv(DATABASE_URL_ENV, "oracle://x")
    with pytest.raises(ConfigFileError, match=DATABASE_URL_ENV):
        load_cloud_config(config)


def test_redact_url() -> None:
    assert redact_url("postgresql://u:pw@h:5/db") == "postgresql://u:***@h:5/db"
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redact_url("sqlite:///x.db") == "sqlite:///x.db"


def test_copy_into_another_database(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(config), "edge", "add", "line-1"]) == 0
    token = capsys.readouterr().out.strip()
    target = tmp_path / "new.db"
    assert main(["--config", str(config), "copy", "--to", f"sqlite:///{target}"]) == 0
    assert "0 frames newly stored" in capsys.readouterr().out
    other = tmp_path / "other.toml"
    other.write_text(f'[database]\nurl = "sqlite:///{target}"\n', encoding="utf-8")
    assert main(["--config", str(other), "edge", "list"]) == 0
    assert "line-1" in capsys.readouterr().out and token.startswith("twe_")


def test_serve_stops_with_a_plain_message_when_the_database_cannot_be_opened(tmp_path: Path) -> None:
    import subprocess
    import sys

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x", encoding="utf-8")
    config = tmp_path / "cloud.toml"
    config.write_text(f'[server]\nport = 0\n[database]\nurl = "sqlite:///{blocker}/cloud.db"\n', encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "cloud.cli", "--config", str(config), "serve"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0
    assert "twincloud cannot start" in proc.stderr


def test_devices_are_bound_and_moved_from_the_command_line(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def run(*args: str) -> tuple[int, str, str]:
        code = main(["--config", str(config), *args])
        out, err = capsys.readouterr()
        return code, out, err

    for edge in ("line-1", "line-2"):
        assert run("edge", "add", edge)[0] == 0
    assert run("device", "add", "press-1", "--edge", "line-1", "--reason", "new press")[0] == 0
    code, out, _ = run("device", "list")
    assert code == 0 and out.split() == ["press-1", "line-1", "never"]
    code, _, err = run("device", "add", "press-1", "--edge", "line-2")
    assert code == 1 and "known already" in err
    assert run("device", "move", "press-1", "--to", "line-2", "--reason", "line 1 rebuilt") == (
        0, "device 'press-1' moved from edge 'line-1' to 'line-2'\n", "")
    assert "nothing changed" in run("device", "move", "press-1", "--to", "line-2")[1]
    for args, words in [(("move", "nothing", "--to", "line-1"), "no device named 'nothing'"),
                        (("move", "press-1", "--to", "nobody"), "no edge named 'nobody'"),
                        (("move", "bad name!", "--to", "line-1"), "name 'bad name!'"),
                        (("move", "press-1", "--to", "line-1", "--reason", "x" * 600), "at most 500 characters"),
                        (("moves", "nothing"), "no device named")]:
        code, _, err = run("device", *args)
        assert code == 1 and words in err, (args, err)
    code, out, _ = run("device", "moves", "press-1")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    assert "(new) -> line-1" in lines[0] and "new press" in lines[0]
    assert "line-1 -> line-2" in lines[1] and "(command line)" in lines[1] and lines[1].endswith("line 1 rebuilt")
    code, out, _ = run("device", "moves", "press-1", "--json")
    assert [(m["from_edge"], m["to_edge"]) for m in json.loads(out)] == [(None, "line-1"), ("line-1", "line-2")]


def test_a_replica_name_that_cannot_be_a_metrics_label_is_refused(config: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(config), "serve", "--replica", 'cloud "1"']) == EX_CONFIG
    assert "--replica: use letters, digits" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nreplica = "no spaces"\n', encoding="utf-8")
    assert main(["check-config", str(bad)]) == EX_CONFIG
    assert "server.replica" in capsys.readouterr().err
