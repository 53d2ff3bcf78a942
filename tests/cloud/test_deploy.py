"""The deploy files stay in step with the code: example config loads, dashboard queries name real metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from cloud.config import load_cloud_config
from cloud.metrics import Metrics
from cloud.storage.base import EdgeRecord
from cloud.storage.registry import MlCounts

ROOT = Path(__file__).resolve().parents[2]


def test_the_example_config_loads() -> None:
    config = load_cloud_config(ROOT / "deploy" / "cloud.example.toml")
    assert config.database.backend == "sqlite"
    assert str(config.database.sqlite_path) == "/var/lib/twincloud/cloud.db"


def test_every_dashboard_query_uses_metrics_the_service_exports() -> None:
    edge = EdgeRecord("edge-1", 0, False, last_seen=1, queue_depth=3, oldest_age_s=1.5, drops={"disk": 1},
                      quarantined=0, frames_stored=5, clock_skew_s=0.1)
    metrics = Metrics(replica="cloud-1")
    ml = MlCounts(alerts_open=2, alerts_unacknowledged=3, drift={"warn": 1, "drift": 0})
    text = metrics.render([edge], ml).decode()  # the fleet's series, read from the database at each scrape
    exported = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    for family in metrics.registry.collect():  # this replica's, with or without samples yet
        exported |= {family.name, f"{family.name}_total", f"{family.name}_bucket", f"{family.name}_count",
                     f"{family.name}_sum"}
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "twincloud.json").read_text(encoding="utf-8"))
    used = {name for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"twincloud_[a-z_]+", target["expr"])}
    assert used and used <= exported, used - exported


def test_compose_runs_the_cloud_against_postgresql() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text(encoding="utf-8"))
    cloud, db = compose["services"]["cloud"], compose["services"]["db"]
    assert db["image"].startswith("postgres")
    assert cloud["environment"]["TWINCLOUD_DATABASE_URL"].startswith("postgresql://")
    assert cloud["depends_on"]["db"]["condition"] == "service_healthy"
    assert (ROOT / cloud["build"]["dockerfile"]).exists()


def test_the_systemd_unit_runs_twincloud_and_stops_on_config_errors() -> None:
    unit = (ROOT / "systemd" / "twincloud.service").read_text(encoding="utf-8")
    assert "ExecStart=/opt/twinedge/.venv/bin/twincloud --config /etc/twincloud/cloud.toml serve" in unit
    assert "RestartPreventExitStatus=78" in unit and "User=twincloud" in unit
    assert "LimitNOFILE=65536" in unit


def test_the_scale_out_compose_runs_two_named_replicas_behind_haproxy_on_one_database() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.scale.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    replicas = {name: s for name, s in services.items() if name.startswith("cloud-")}
    assert len(replicas) == 2
    for name, service in replicas.items():
        assert service["command"][-2:] == ["--replica", name]
        assert service["environment"]["TWINCLOUD_DATABASE_URL"].endswith("@db:5432/twincloud")
    balancer = services["lb"]
    assert balancer["image"].startswith("haproxy")
    assert "./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in balancer["volumes"]
    config = (ROOT / "deploy" / "haproxy.cfg").read_text(encoding="utf-8")
    assert all(f"${{TWINCLOUD_REPLICA_{k}-{name}:8080}}" in config for k, name in enumerate(sorted(replicas), 1))
