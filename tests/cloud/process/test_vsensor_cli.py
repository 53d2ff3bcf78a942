"""``twincloud process ...``: the real command line against a real twincloud (uvicorn subprocess, SQLite)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud.cli import main
from shared.codec import encode_obj
from tests.cloud.apiclient import T0, auth, batch
from tests.cloud.server import CloudServer

MODELS = '[process]\nmodels = {lag = "tests.cloud.process.lagmodel:FirstOrderLag"}\n'
RETENTION_OFF = "[retention]\nsamples_days = 0\nrollups_days = 0\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    with CloudServer(tmp_path_factory.mktemp("process-cli"), extra_config=MODELS + RETENTION_OFF) as cloud:
        made = httpx.post(f"{cloud.base_url}/api/v1/users", json={"name": "olga", "role": "operator"},
                          headers=auth(cloud.admin_token), timeout=10)
        assert made.status_code == 201, made.text
        cloud.operator_token = made.json()["token"]  # type: ignore[attr-defined]
        frames = [{"ts": T0 + t, "device_id": "press-1", "metrics": {}, "status": "ok",
                   "sensors": {"V": 230.0, "I": 2.0 + t, "mould_F": 176.0, "shot": 1.0 if t >= 1 else 0.0}}
                  for t in range(0, 41)]
        resp = httpx.post(f"{cloud.base_url}/api/v1/sync/batches", timeout=30,
                          content=encode_obj(batch("edge-1", [(k + 1, f) for k, f in enumerate(frames)])),
                          headers={**auth(cloud.edge_token), "Content-Type": "application/msgpack"})
        assert resp.status_code == 200, resp.text
        yield cloud


@pytest.fixture
def cli(server: CloudServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    monkeypatch.setenv("TWINCLOUD_TOKEN", server.operator_token)  # type: ignore[attr-defined]
    monkeypatch.delenv("TWINCLOUD_URL", raising=False)

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["--config", str(server.config_path), "process", *argv])
        out = capsys.readouterr()
        return code, out.out, out.err
    return run


def binding(server: CloudServer, name: str) -> dict[str, Any]:
    resp = httpx.get(f"{server.base_url}/api/v1/process/bindings/{name}", headers=auth(server.viewer_token))
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def wait_points(server: CloudServer, name: str, count: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while (found := binding(server, name))["points"] < count:
        assert time.monotonic() < deadline, found
        time.sleep(0.05)
    return found


def test_define_list_test_disable_enable(cli: Any, server: CloudServer, tmp_path: Path) -> None:
    power = tmp_path / "power.json"
    power.write_text(json.dumps({"name": "power", "device": "press-1", "spec": {
        "kind": "formula", "expression": "V * I / 1000", "output": "P_kW", "unit": "kW"}}))
    code, out, err = cli("define", str(power))
    assert code == 0, err
    assert "binding power of press-1 defined (formula)" in out
    wait_points(server, "power", 41)  # it runs over the readings the device sent already

    core = tmp_path / "core.toml"
    core.write_text('name = "core"\ndevice = "press-1"\n[spec]\nkind = "model"\nmodel = "lag"\nstart_on = "shot"\n'
                    '[spec.parameters]\ntau_s = 20.0\nt0_degC = 20.0\n[spec.solver]\nbackend = "lsoda"\n'
                    'rtol = 1e-8\natol = 1e-8\n[spec.inputs.T_mould]\nsensor = "mould_F"\nunit = "degF"\n')
    code, out, err = cli("define", str(core))
    assert code == 0, err
    code, out, err = cli("define", str(core))
    assert code == 1 and "409" in err and "exists already" in err
    assert cli("define", str(core), "--replace")[0] == 0

    code, out, err = cli("list")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("core ") and "model lag" in lines[0]
    assert lines[1].startswith("power ") and "V * I / 1000" in lines[1] and "41 pts" in lines[1]
    code, out, _ = cli("list", "--json", "--device", "press-1")
    assert [b["name"] for b in json.loads(out)] == ["core", "power"]

    # test on history: the lag's closed form from the shot at T0 + 1, 80 degC mould, printed as a table
    code, out, err = cli("test", "core", "--start", str(T0), "--stop", str(T0 + 41))
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()[1:-1]]
    assert len(rows) == 40 and all(r[1] == "core.T_core" for r in rows)  # each reading from the shot on
    assert rows[0][0].startswith("2026-01-01T00:00:01.000") and float(rows[0][2]) == pytest.approx(20.0)
    assert float(rows[-1][2]) == pytest.approx(80 + (20 - 80) * math.exp(-39 / 20), abs=1e-4)
    assert out.splitlines()[-1] == "40 points; nothing was stored"
    code, out, err = cli("test", "core", "--start", str(T0), "--stop", str(T0 + 41), "--json", "--max-points", "5")
    found = json.loads(out)
    assert len(found["points"]) == 5 and found["truncated"] is True
    # a definition tried from a file: a rolling mean over 10 s of I (I = 2 + t: the mean of the last 10 readings)
    rolling = tmp_path / "rolling.json"
    rolling.write_text(json.dumps({"name": "imean", "device": "press-1", "spec": {
        "kind": "formula", "expression": "mean(I)", "output": "I_mean", "window": {"kind": "rolling", "seconds": 10}}}))
    code, out, err = cli("test", "--file", str(rolling), "--start", str(T0 + 20), "--stop", str(T0 + 21), "--json")
    assert code == 0, err
    assert json.loads(out)["points"][0]["value"] == pytest.approx(2 + (11 + 20) / 2)
    assert "imean" not in [b["name"] for b in json.loads(cli("list", "--json")[1])]  # nothing was stored

    code, out, _ = cli("disable", "power")
    assert code == 0 and "power disabled" in out and binding(server, "power")["enabled"] is False
    code, out, _ = cli("enable", "power")
    assert code == 0 and binding(server, "power")["enabled"] is True


def test_refusals_name_the_key_and_exit_codes_tell_them_apart(cli: Any, server: CloudServer, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "bad", "device": "press-1", "spec": {
        "kind": "formula", "expression": "pp * 2", "output": "x",
        "inputs": {"pp": {"sensor": "V", "unit": "bar", "to": "degC"}}}}))
    code, _, err = cli("define", str(bad))
    assert code == 2 and "spec.inputs.pp.unit: 'bar'" in err and "cannot be converted into 'degC'" in err
    (tmp_path / "broken.json").write_text("{not json")
    code, _, err = cli("define", str(tmp_path / "broken.json"))
    assert code == 2 and "not valid JSON" in err
    code, _, err = cli("enable", "nope")
    assert code == 1 and "404" in err and "no binding named 'nope'" in err
    code, _, err = cli("test", "--start", "0", "--stop", "1")
    assert code == 2 and "NAME or --file" in err

    monkeypatch.setenv("TWINCLOUD_TOKEN", server.viewer_token)
    code, _, err = cli("define", str(bad))
    assert code == 1 and "403" in err
    token_file = tmp_path / "token"
    token_file.write_text(server.operator_token + "\n")  # type: ignore[attr-defined]
    monkeypatch.delenv("TWINCLOUD_TOKEN")
    code, _, err = cli("list")
    assert code == 1 and "no token" in err
    assert cli("list", "--token-file", str(token_file))[0] == 0
    code, _, err = cli("list", "--token-file", str(token_file), "--url", "http://127.0.0.1:9")
    assert code == 1 and "cannot be reached" in err
