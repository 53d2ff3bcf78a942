"""Prometheus metrics of one API process, and the ASGI middleware that times every request.

Each app has its own registry (tests build many apps in one process). Two
kinds of series come out of ``/metrics``:

- This process's own counters, gauges and histograms (requests, batches,
  WebSocket clients, ...), each with a ``replica`` label naming the replica
  (``server.replica``, by default host name:port). With ``server.workers`` > 1
  the workers of a replica count together (prometheus_client's multiprocess
  mode, in a directory ``twincloud serve`` makes for them and removes after):
  whichever worker answers a scrape, it shows the replica's totals. Sum them
  over ``replica`` in Prometheus.
- The fleet's state, read from the database at scrape time (``twincloud_edge_*``:
  frames stored, duplicate and refused per edge, each edge's queue, lag,
  drops, clock skew; ``twincloud_alerts_*`` and ``twincloud_models_drifted``:
  the edges' alerts and the devices whose model's inputs drifted): every
  replica, and every worker, answers the same,
  current values, so a scrape through a load balancer adds up to what was
  ingested whichever replica answers. These carry no ``replica`` label.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud.config import MULTIPROC_ENV
from cloud.storage.base import EdgeRecord
from cloud.storage.registry import MlCounts

__all__ = ["Metrics", "MetricsMiddleware"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Fleet:
    """Each edge's counts and last health report as the database keeps them (all replicas together)."""

    def __init__(self) -> None:
        self.edges: list[EdgeRecord] = []
        self.ml: MlCounts | None = None

    def collect(self) -> Iterator[Metric]:
        where = "by all replicas (from the database)"
        counters = {
            "stored": CounterMetricFamily("twincloud_edge_frames_stored", f"frames of the edge stored, {where}",
                                          labels=["edge"]),
            "duplicate": CounterMetricFamily("twincloud_edge_frames_duplicate", "frames of the edge that were "
                                             f"stored already, {where}", labels=["edge"]),
            "rejected": CounterMetricFamily("twincloud_edge_frames_rejected", f"frames of the edge refused, {where}",
                                            labels=["edge"]),
        }
        gauges = {
            "queue": GaugeMetricFamily("twincloud_edge_queue_depth", "frames waiting on the edge, as it reported",
                                       labels=["edge"]),
            "lag": GaugeMetricFamily("twincloud_edge_lag_seconds", "age of the oldest frame queued on the edge",
                                     labels=["edge"]),
            "drops": GaugeMetricFamily("twincloud_edge_dropped_frames", "frames the edge dropped, as it reported",
                                       labels=["edge", "reason"]),
            "seen": GaugeMetricFamily("twincloud_edge_last_seen_timestamp_seconds", "last sync of the edge",
                                      labels=["edge"]),
            "quarantined": GaugeMetricFamily("twincloud_edge_quarantined_frames", "frames the edge set aside",
                                             labels=["edge"]),
            "skew": GaugeMetricFamily("twincloud_edge_clock_skew_seconds",
                                      "the edge's clock minus the cloud's when its last batch arrived",
                                      labels=["edge"]),
        }
        for edge in self.edges:
            counters["stored"].add_metric([edge.name], edge.frames_stored)
            counters["duplicate"].add_metric([edge.name], edge.duplicates)
            counters["rejected"].add_metric([edge.name], edge.rejected)
            if edge.last_seen is None:
                continue
            gauges["seen"].add_metric([edge.name], edge.last_seen / 1e6)
            for key, value in (("queue", edge.queue_depth), ("lag", edge.oldest_age_s),
                               ("quarantined", edge.quarantined), ("skew", edge.clock_skew_s)):
                if value is not None:
                    gauges[key].add_metric([edge.name], value)
            for reason, count in edge.drops.items():
                gauges["drops"].add_metric([edge.name, reason], count)
        yield from counters.values()
        yield from gauges.values()
        if self.ml is not None:
            yield from _ml_gauges(self.ml)


def _ml_gauges(ml: MlCounts) -> Iterator[Metric]:
    yield GaugeMetricFamily("twincloud_alerts_open", "alerts the edges raised and have not cleared yet",
                            value=ml.alerts_open)
    yield GaugeMetricFamily("twincloud_alerts_unacknowledged", "alerts nobody has acknowledged yet, open or cleared",
                            value=ml.alerts_unacknowledged)
    drifted = GaugeMetricFamily("twincloud_models_drifted", "devices whose model's inputs moved away from the "
                                "training data, by level (warn: PSI from 0.1, drift: from 0.25)", labels=["level"])
    for level, count in ml.drift.items():
        drifted.add_metric([level], count)
    yield drifted


class _Chain:
    """The series of several collectors, one after the other."""

    def __init__(self, *collectors: Any) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


class _Labelled:
    """A registry's series with the ``replica`` label added."""

    def __init__(self, registry: CollectorRegistry, replica: str) -> None:
        self.registry = registry
        self.replica = replica

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            out = Metric(family.name, family.documentation, family.type, family.unit)
            out.samples = [s._replace(labels={**s.labels, "replica": self.replica}) for s in family.samples]
            yield out


class Metrics:
    def __init__(self, replica: str = "") -> None:
        self.replica = replica
        self.registry = CollectorRegistry(auto_describe=True)
        self.shared_dir = os.environ.get(MULTIPROC_ENV)  # workers of one replica, counting together
        r = self.registry
        self.http_requests = Histogram(
            "twincloud_http_request_duration_seconds", "HTTP requests by route, method and status",
            ["route", "method", "status"], buckets=_LATENCY_BUCKETS, registry=r)
        self.sync_batches = Counter("twincloud_sync_batches_total", "sync batches by outcome", ["outcome"],
                                    registry=r)
        self.frames = Counter("twincloud_sync_frames_total", "frames received, by result",
                              ["edge", "result"], registry=r)
        self.values_dropped = Counter("twincloud_sync_values_dropped_total", "measured values dropped at sync "
                                      "(derived_field: a field a binding derives)", ["edge", "reason"], registry=r)
        self.sync_alerts = Counter("twincloud_sync_alerts_total", "alert events received, by result", ["result"],
                                   registry=r)
        self.samples = Counter("twincloud_samples_stored_total", "sensor values stored", registry=r)
        self.sync_bytes = Counter("twincloud_sync_bytes_total", "sync request bytes, as sent and decoded",
                                  ["form"], registry=r)
        self.sync_inflight = Gauge("twincloud_sync_inflight", "sync requests being handled", registry=r,
                                   multiprocess_mode="livesum")
        self.ingest_seconds = Histogram("twincloud_ingest_seconds", "time to store one batch",
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.storage_errors = Counter("twincloud_storage_errors_total", "storage operations that failed",
                                      ["kind"], registry=r)
        self.ws_clients = Gauge("twincloud_ws_clients", "live WebSocket subscribers", registry=r,
                                multiprocess_mode="livesum")
        self.ws_dropped = Counter("twincloud_ws_dropped_total", "frames a slow WebSocket client missed",
                                  registry=r)
        self.live_listening = Gauge("twincloud_live_listening", "1 while the live feed hears other replicas' "
                                    "batches from PostgreSQL (LISTEN/NOTIFY), 0 while it polls (as the process "
                                    "that answered the scrape found it)", registry=r,
                                    multiprocess_mode="livemostrecent")
        self._fleet = _Fleet()

    def render(self, edges: list[EdgeRecord], ml: MlCounts | None = None) -> bytes:
        self._fleet.edges = edges
        self._fleet.ml = ml
        own: CollectorRegistry = self.registry
        if self.shared_dir:  # every worker's files, merged
            _forget_dead_workers(self.shared_dir)
            own = CollectorRegistry(auto_describe=True)
            multiprocess.MultiProcessCollector(own, path=self.shared_dir)
        return generate_latest(_Chain(_Labelled(own, self.replica) if self.replica else own, self._fleet))

    def process_ended(self) -> None:
        """Let the live gauges of this worker go (at its shutdown)."""
        if self.shared_dir:
            multiprocess.mark_process_dead(os.getpid(), self.shared_dir)


def _forget_dead_workers(directory: str) -> None:
    """Drop the live gauges of workers that are gone without a clean shutdown (killed, crashed): their
    counters stay, their WebSocket clients and requests in flight do not."""
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and not _alive(int(pid)):
            multiprocess.mark_process_dead(int(pid), directory)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class MetricsMiddleware:
    """Times every HTTP request under its route template (never the raw path: unbounded labels)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.http_requests.labels(template, scope["method"], str(status[0])).observe(
                time.perf_counter() - start)
