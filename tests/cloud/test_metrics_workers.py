"""The workers of a replica count together in /metrics: what a worker that died without a clean shutdown
leaves behind (killed by the OOM killer, a crash) keeps its counters but not its live gauges."""

from __future__ import annotations

import os
import subprocess
import sys

from cloud.metrics import Metrics

WORKER = """
from cloud.metrics import Metrics
m = Metrics(replica="cloud-1")
m.ws_clients.inc(5)        # five WebSocket clients on this worker
m.sync_batches.labels("stored").inc(3)
import os
os._exit(0)                # gone without its shutdown (as if killed)
"""


def test_a_dead_workers_counters_stay_and_its_live_gauges_go(tmp_path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", WORKER], env=env, check=True, timeout=60)
    assert any(p.name.startswith("gauge_livesum_") for p in tmp_path.iterdir())
    metrics = Metrics(replica="cloud-1")
    metrics.shared_dir = str(tmp_path)  # this process reads the workers' files, as the one answering a scrape
    text = metrics.render([]).decode()
    assert 'twincloud_sync_batches_total{outcome="stored",replica="cloud-1"} 3.0' in text
    assert 'twincloud_ws_clients{replica="cloud-1"} 5.0' not in text
    assert not any(p.name.startswith("gauge_livesum_") for p in tmp_path.iterdir())
