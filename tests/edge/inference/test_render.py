"""`twinedge model status` and the model lines of `twinedge status`, as an operator reads them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from edge.render import render_model_status, render_status

NOW = 1_767_225_600.0


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ages ("3 s ago") are read at NOW, not at however much later the rendering ran."""
    monkeypatch.setattr("edge.render.time", SimpleNamespace(time=lambda: NOW))


def device(**over: object) -> dict[str, object]:
    now = NOW
    base: dict[str, object] = {
        "device_id": "press-1", "model": "press-anomaly", "version": 3, "sha256": "ab12cd34ef56" + "0" * 52,
        "kind": "anomaly", "state": "serving", "message": "", "pinned": False, "last_score": 0.4213,
        "last_scored_at": now - 3, "drift": "warn", "psi": {"temp": 0.18, "vib": 0.05}, "drift_rows": 1000,
    }
    base.update(over)
    return base


def test_model_status_shows_model_version_hash_state_score_and_drift() -> None:
    now = NOW
    text = render_model_status({"devices": [device(), device(device_id="press-2", model=None, version=None,
                                                           sha256=None, state="rejected", last_score=None,
                                                           last_scored_at=None, drift="unknown", psi={},
                                                           message="press-anomaly v4 rejected: sha256 differs")],
                                "rules": [{"scope": "fleet", "target": None, "model": "press-anomaly", "version": 3,
                                           "origin": "cloud"}],
                                "rejected": [{"model": "press-anomaly", "version": 4, "sha256": "c2" * 32,
                                              "reason": "sha256 differs", "at": now - 60, "device": None}]})
    lines = text.splitlines()
    assert lines[0].split() == ["DEVICE", "MODEL", "VERSION", "SHA256", "STATE", "LAST", "SCORE", "WHEN", "DRIFT"]
    assert lines[2].split() == ["press-1", "press-anomaly", "v3", "ab12cd34ef56", "serving", "0.4213", "3", "s",
                                "ago", "warn", "(temp", "0.18,", "vib", "0.05)"]
    assert lines[3].split()[:2] == ["press-2", "-"] and "rejected" in lines[3]
    assert "press-2: press-anomaly v4 rejected: sha256 differs" in text
    assert "  the fleet: press-anomaly v3 (cloud)" in lines
    assert "  press-anomaly v4 (sha256 c2c2c2c2c2c2), 60 s ago: sha256 differs" in lines


def test_model_status_without_models() -> None:
    assert render_model_status({"devices": [], "rules": [], "rejected": []}) == "no device is scored by a model"


def test_status_has_one_line_per_device_with_its_model() -> None:
    now = NOW
    status = {
        "version": "1.0", "edge_id": "edge-1", "uptime_s": 5, "sources": [], "writer": {
            "committed_frames": 1, "commits": 1, "queued_in_memory": 0, "backpressure_waits": 0},
        "queue": {"depth": 0, "used_bytes": 0, "budget_bytes": 1e9},
        "models": {"press-1": {"model": "press-anomaly", "version": 3, "state": "serving", "last_score": 0.42,
                               "last_scored_at": now + 5, "drift": "drift"},
                   "press-2": {"model": "press-anomaly", "version": 3, "state": "failed", "last_score": None,
                               "last_scored_at": None, "drift": "unknown"}},
    }
    lines = render_status(status).splitlines()
    assert "models:       press-1: press-anomaly v3 serving; last score 0.42 (0 s ago); DRIFT drift" in lines
    assert "              press-2: press-anomaly v3 failed" in lines
