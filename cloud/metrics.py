"""Prometheus metrics of one API process, and the ASGI middleware that times every request.

Each app has its own registry (tests build many apps in one process). Two
kinds of series come out of ``/metrics``:

- This process's own counters, gauges and histograms (requests, batches,
  WebSocket clients, ...), each with a ``replica`` label naming the process
  (``server.replica``, by default host name:port; a worker of ``server.workers``
  > 1 adds ``/`` and its process id). Sum them over ``replica`` in Prometheus.
- The fleet's state, read from the database at scrape time (``twincloud_edge_*``,
  frames stored, duplicate and refused per edge among them): every replica,
  and every worker, answers the same, current values, so a scrape through a
  load balancer adds up to what was ingested whichever replica answers. These
  carry no ``replica`` label.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud.storage.base import EdgeRecord

__all__ = ["Metrics", "MetricsMiddleware"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _EdgeTotals:
    """Per-edge counts kept in the database (all replicas together), as counters."""

    def __init__(self) -> None:
        self.edges: list[EdgeRecord] = []

    def collect(self) -> Iterator[Metric]:
        families = {
            "stored": CounterMetricFamily("twincloud_edge_frames_stored", "frames of the edge stored, by all "
                                          "replicas (from the database)", labels=["edge"]),
            "duplicate": CounterMetricFamily("twincloud_edge_frames_duplicate", "frames of the edge that were "
                                             "stored already, by all replicas (from the database)", labels=["edge"]),
            "rejected": CounterMetricFamily("twincloud_edge_frames_rejected", "frames of the edge refused, by all "
                                            "replicas (from the database)", labels=["edge"]),
        }
        for edge in self.edges:
            families["stored"].add_metric([edge.name], edge.frames_stored)
            families["duplicate"].add_metric([edge.name], edge.duplicates)
            families["rejected"].add_metric([edge.name], edge.rejected)
        yield from families.values()


class _Labelled:
    """The registry's series with ``replica`` added to this process's own (not to the database's)."""

    def __init__(self, registry: CollectorRegistry, replica: str) -> None:
        self.registry = registry
        self.replica = replica

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            if family.name.startswith(FLEET_PREFIX):
                yield family
                continue
            out = Metric(family.name, family.documentation, family.type, family.unit)
            out.samples = [s._replace(labels={**s.labels, "replica": self.replica}) for s in family.samples]
            yield out


FLEET_PREFIX = "twincloud_edge_"  # series read from the database: the same on every replica


class Metrics:
    def __init__(self, replica: str = "") -> None:
        self.replica = replica
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Histogram(
            "twincloud_http_request_duration_seconds", "HTTP requests by route, method and status",
            ["route", "method", "status"], buckets=_LATENCY_BUCKETS, registry=r)
        self.sync_batches = Counter("twincloud_sync_batches_total", "sync batches by outcome", ["outcome"],
                                    registry=r)
        self.frames = Counter("twincloud_sync_frames_total", "frames received, by result",
                              ["edge", "result"], registry=r)
        self.samples = Counter("twincloud_samples_stored_total", "sensor values stored", registry=r)
        self.sync_bytes = Counter("twincloud_sync_bytes_total", "sync request bytes, as sent and decoded",
                                  ["form"], registry=r)
        self.sync_inflight = Gauge("twincloud_sync_inflight", "sync requests being handled", registry=r)
        self.ingest_seconds = Histogram("twincloud_ingest_seconds", "time to store one batch",
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.storage_errors = Counter("twincloud_storage_errors_total", "storage operations that failed",
                                      ["kind"], registry=r)
        self.ws_clients = Gauge("twincloud_ws_clients", "live WebSocket subscribers", registry=r)
        self.ws_dropped = Counter("twincloud_ws_dropped_total", "frames a slow WebSocket client missed",
                                  registry=r)
        self.edge_queue = Gauge("twincloud_edge_queue_depth", "frames waiting on the edge, as it reported",
                                ["edge"], registry=r)
        self.edge_lag = Gauge("twincloud_edge_lag_seconds", "age of the oldest frame queued on the edge",
                              ["edge"], registry=r)
        self.edge_drops = Gauge("twincloud_edge_dropped_frames", "frames the edge dropped, as it reported",
                                ["edge", "reason"], registry=r)
        self.edge_last_seen = Gauge("twincloud_edge_last_seen_timestamp_seconds", "last sync of the edge",
                                    ["edge"], registry=r)
        self.edge_quarantined = Gauge("twincloud_edge_quarantined_frames", "frames the edge set aside",
                                      ["edge"], registry=r)
        self.edge_clock_skew = Gauge("twincloud_edge_clock_skew_seconds",
                                     "the edge's clock minus the cloud's when its last batch arrived",
                                     ["edge"], registry=r)
        self.live_listening = Gauge("twincloud_live_listening", "1 while the live feed hears other replicas' "
                                    "batches from PostgreSQL (LISTEN/NOTIFY), 0 while it polls", registry=r)
        self._totals = _EdgeTotals()
        r.register(self._totals)

    def render(self, edges: list[EdgeRecord]) -> bytes:
        for gauge in (self.edge_queue, self.edge_lag, self.edge_drops, self.edge_last_seen, self.edge_quarantined,
                      self.edge_clock_skew):
            gauge.clear()
        for edge in edges:
            if edge.last_seen is None:
                continue
            self.edge_last_seen.labels(edge.name).set(edge.last_seen / 1e6)
            if edge.queue_depth is not None:
                self.edge_queue.labels(edge.name).set(edge.queue_depth)
            if edge.oldest_age_s is not None:
                self.edge_lag.labels(edge.name).set(edge.oldest_age_s)
            if edge.quarantined is not None:
                self.edge_quarantined.labels(edge.name).set(edge.quarantined)
            if edge.clock_skew_s is not None:
                self.edge_clock_skew.labels(edge.name).set(edge.clock_skew_s)
            for reason, count in edge.drops.items():
                self.edge_drops.labels(edge.name, reason).set(count)
        self._totals.edges = edges
        return generate_latest(_Labelled(self.registry, self.replica) if self.replica else self.registry)


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
