"""Program harvester benchmark: lines/s of the G-code tokenizer and interpreter on a generated Fanuc/Haas
corpus (target: at least 100,000 lines/s), and the cycle-time calibration: fitted on half of the corpus with
known "true" times from an independent machine model, the median error on the other half (target: at most 10 %).

    python bench/bench_harvester.py [--programs 400] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.programs import MachineProfile, analyse  # noqa: E402
from edge.sources.programs.config import ProgramsSourceConfig  # noqa: E402
from edge.sources.programs.source import ProgramsSource  # noqa: E402
from shared.cycletime import apply_calibration, fit_calibration  # noqa: E402
from tests.edge.programs.corpus import generate  # noqa: E402


class _CountingSink:
    """Counts what the harvester hands over; keeps positions like the store."""

    edge_id = "bench"

    def __init__(self) -> None:
        self.documents = 0
        self.positions: dict[str, str] = {}

    async def put(self, frames: Sequence[Any], *, durable: bool = False, events: Sequence[Any] = (),
                  documents: Sequence[Any] = (), position: Any = None) -> None:
        self.documents += len(documents)
        if position is not None:
            self.positions[position.key] = position.value

    async def reject(self, origin: str, reason: str, payload: bytes | None = None) -> None:
        pass

    async def position(self, key: str) -> str | None:
        return self.positions.get(key)


async def _folder_scan(texts: list[str], lines: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(texts):
            (Path(tmp) / f"p{i:05d}.nc").write_text(text)
        config = ProgramsSourceConfig.model_validate({"kind": "programs", "name": "bench", "settle_time": "0s",
                                                      "folders": [{"name": "f", "path": tmp}]})
        sink = _CountingSink()
        source = ProgramsSource(config, sink)
        start = time.perf_counter()
        await source.scan_once()
        first = time.perf_counter() - start
        start = time.perf_counter()
        await source.scan_once()
        again = time.perf_counter() - start
    print(f"harvester source: first scan of {len(texts)} files ({lines:,} lines) {first:.2f} s = "
          f"{len(texts) / first:,.0f} files/s, {lines / first:,.0f} lines/s with files, hashes and commits; "
          f"{sink.documents} documents; rescan of unchanged files {again * 1000:.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--programs", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    corpus = [generate(seed) for seed in range(args.programs)]
    data = [p.text.encode() for p in corpus]
    lines = sum(p.lines for p in corpus)
    profile = MachineProfile()
    best = float("inf")
    records = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        records = [analyse(d, path=f"p{i}.nc", folder="bench", mtime=0.0, profile=profile) for i, d in enumerate(data)]
        best = min(best, time.perf_counter() - start)
    print(f"harvester: {len(corpus)} programs, {lines:,} lines, {sum(len(d) for d in data) / 1e6:.1f} MB: "
          f"{lines / best:,.0f} lines/s (best of {args.repeat}; target >= 100,000)")
    # a long contouring program (CAM output style) on its own
    big = "\n".join(f"G1 X{i % 100 * 0.37:.3f} Y{i % 77 * 0.41:.3f} Z-{i % 5 * 0.1:.1f} F{800 + i % 7 * 50}"
                    for i in range(200_000)).encode()
    best_big = float("inf")
    for _ in range(args.repeat):
        start = time.perf_counter()
        analyse(big, path="big.nc", folder="bench", mtime=0.0, profile=profile)
        best_big = min(best_big, time.perf_counter() - start)
    print(f"harvester: one 200,000-line contour program (CAM style): {200_000 / best_big:,.0f} lines/s")
    asyncio.run(_folder_scan([p.text for p in corpus], lines))
    pairs = [(r.estimate, p.true_s) for r, p in zip(records, corpus, strict=True) if r.estimate is not None]
    train, test = pairs[0::2], pairs[1::2]
    raw = statistics.median(abs(e.total_s - t) / t for e, t in test)
    calibration = fit_calibration(train)
    errors = [abs(apply_calibration(calibration, e) - t) / t for e, t in test]
    print(f"calibration: fitted on {len(train)} runs ({calibration.method}: "
          + ", ".join(f"{k} {v:.3f}" for k, v in calibration.as_dict().items() if k not in ("runs", "method"))
          + f"); median error on the other {len(test)}: {statistics.median(errors) * 100:.1f} % "
          f"(uncalibrated {raw * 100:.1f} %; target <= 10 %), 90th percentile "
          f"{statistics.quantiles(errors, n=10)[-1] * 100:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
