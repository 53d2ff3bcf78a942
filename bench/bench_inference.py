"""The cost of scoring on the data path: ``InferenceEngine.enrich`` per frame, as the store writer calls it.

Run: python bench/bench_inference.py            (about 20 s; --quick for a few seconds)

Each case feeds batches of frames of 10 devices (8 sensors each) through ``enrich``, as the writer does before
each transaction, and prints microseconds per frame and frames/s of one core, then microseconds per frame with
the store's encoding of the batch added (the scores are merged into the stored frames as they are encoded):
  - no model assigned (the writer's cost when the edge scores nothing);
  - a frame-mode anomaly model for every device (a small real ONNX graph, one thread);
  - the same with every second frame leaving half the sensors out (a Modbus deadband: values carried forward);
  - a window-mode model (32 frames, a row every 8; mean, std, rms, peak features).
Batch sizes: 1 (a poller's frame alone), 50 and 1,000 frames (the writer's largest transaction by default).
Needs the dev extra (onnx) to build the test model.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.inference import InferenceConfig, InferenceEngine, LocalAssignment  # noqa: E402
from edge.scored import ScoredFrames  # noqa: E402
from shared.codec import encode_frame  # noqa: E402
from shared.frame import TelemetryFrame  # noqa: E402
from shared.modelpackage import ModelAssignment  # noqa: E402
from tests.mlkit import make_package, make_schema  # noqa: E402

SENSORS = [f"s{i}" for i in range(8)]
DEVICES = [f"press-{i}" for i in range(10)]
T0 = 1_800_000_000.0


def frames(count: int, start: int, *, deadband: bool) -> list[TelemetryFrame]:
    out = []
    for k in range(count):
        i = start + k
        device = DEVICES[i % len(DEVICES)]
        sensors = {name: float((i * 7 + j) % 13) / 13 for j, name in enumerate(SENSORS)}
        if deadband and (i // len(DEVICES)) % 2:
            sensors = dict(list(sensors.items())[:4])
        out.append(TelemetryFrame(ts=T0 + i // len(DEVICES) * 0.1, device_id=device, sensors=sensors))
    return out


async def engine_with(tmp: Path, schema_kwargs: dict[str, object] | None) -> InferenceEngine:
    engine = InferenceEngine(InferenceConfig(), edge_id="edge-1")
    if schema_kwargs is not None:
        data, package = make_package(make_schema(SENSORS, **schema_kwargs), name="bench")  # type: ignore[arg-type]
        path = tmp / "bench.twinmodel"
        path.write_bytes(data)
        rule = ModelAssignment(scope="fleet", model="bench", version=1, sha256=package.sha256, size=len(data))
        await engine.set_assignments([LocalAssignment(rule, path)])
    return engine


def encoded(out: Sequence[TelemetryFrame]) -> list[bytes]:
    """The payloads the store writes for a batch (a scored batch merges its scores as it is encoded)."""
    return out.encoded() if isinstance(out, ScoredFrames) else [encode_frame(f) for f in out]


async def measure(engine: InferenceEngine, batch: int, seconds: float, *, deadband: bool) -> tuple[float, float]:
    """CPU µs per frame of ``enrich`` alone, and of ``enrich`` with the store's encoding of the batch (frames are
    made outside the measured time)."""
    await engine.enrich(frames(batch, 0, deadband=deadband))  # warm up: first run
    cpu = cpu_encoded = 0.0
    done = 0
    start = batch
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        batch_frames = frames(batch, start, deadband=deadband)
        start += batch
        before = time.process_time()
        out, _ = await engine.enrich(batch_frames)
        middle = time.process_time()
        encoded(out)
        cpu += middle - before
        cpu_encoded += time.process_time() - before
        done += batch
        del out  # the batch's frames are freed outside the measured time, as the writer frees them after its commit
    return cpu / done * 1e6, cpu_encoded / done * 1e6


async def main(quick: bool) -> None:
    seconds = 0.5 if quick else 2.0
    window = {"mode": "window", "features": ["mean", "std", "rms", "peak"],
              "window": {"length": 32, "step": 8, "interval_s": 0.1}}
    cases: list[tuple[str, dict[str, object] | None, bool]] = [
        ("no model", None, False),
        ("frame model", {}, False),
        ("frame model, deadband frames", {}, True),
        ("window model (32 / 8)", window, False),
    ]
    print(f"{'case':<32}{'batch':>7}{'µs/frame':>11}{'frames/s':>12}{'+ encoding':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, schema, deadband in cases:
            engine = await engine_with(Path(tmp), schema)
            try:
                for batch in (1, 50, 1000):
                    per_frame, with_encoding = await measure(engine, batch, seconds, deadband=deadband)
                    print(f"{name:<32}{batch:>7}{per_frame:>11.2f}{1e6 / per_frame:>12,.0f}{with_encoding:>12.2f}")
            finally:
                engine.close()
    print("CPU time of this process (the loop and the scoring thread), per frame enriched; '+ encoding' adds the\n"
          "store's encoding of the batch (which merges the scores into the stored frames), in µs/frame.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main(parser.parse_args().quick))
