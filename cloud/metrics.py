"""Prometheus metrics of one API process, and the ASGI middleware that times every request.

Each app has its own registry (tests build many apps in one process). Counters
are per process: with several workers, scrape each one or sum in Prometheus.
The per-edge gauges are read from the database at scrape time, so every
process reports the same, current values.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud.storage.base import EdgeRecord

__all__ = ["Metrics", "MetricsMiddleware"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
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
        return generate_latest(self.registry)


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
