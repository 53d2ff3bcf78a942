"""A window binding's state, stored after every step: `python bench/bench_vsensor_state.py [--names 32]`.

A rolling-window formula over ``--names`` sensors, each window full at
``--points`` readings (``process.max_state_points``), advanced by one reading
of every sensor, as a live step does after a one-frame batch. Prints the time
of the step itself and of what storing and loading its state costs (the JSON
text written to ``process_bindings.state`` and read back with every binding
list), with the size of that text.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloud.process.bindings import BindingSpec, compile_binding  # noqa: E402
from cloud.process.engine import Limits, Reading, step  # noqa: E402
from cloud.process.registry import ModelRegistry  # noqa: E402

S = 1_000_000
T0 = 1_767_225_600 * S


def _ms(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=32)
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    names = [f"s{k}" for k in range(args.names)]
    spec = BindingSpec.model_validate({"name": "w", "device": "d", "spec": {
        "kind": "formula", "expression": f"mean({names[0]}) + mean({names[-1]})", "output": "m",
        "inputs": {n: {"sensor": n} for n in names},  # every one in the window, two in the expression
        "trigger": ["tick"],  # filling the window derives nothing; the step measured below does
        "window": {"kind": "rolling", "seconds": args.points + 10}}})
    compiled = compile_binding(spec, [*names, "tick"], (), ModelRegistry())
    limits = Limits(args.points)
    # readings 1 s apart, values like a measured temperature (no short decimal forms to flatter JSON)
    fill = [Reading(T0 + k * S, n, 60.0 + 20.0 * math.sin(k / 50.0 + j)) for k in range(args.points)
            for j, n in enumerate(names)]
    state, _ = step(compiled, {}, fill, limits)
    text = json.dumps(state)
    one = [Reading(T0 + args.points * S, n, 1.0) for n in [*names, "tick"]]
    print(f"{args.names} sensors x {args.points:,} points in the window; median of {args.repeat}")
    stepped = _ms(lambda: step(compiled, json.loads(text), one, limits), args.repeat)
    print(f"  step (one reading per sensor): {stepped:8.1f} ms (the stored state read in and given back)")
    print(f"  state to text (json.dumps):    {_ms(lambda: json.dumps(state), args.repeat):8.1f} ms")
    print(f"  text to state (json.loads):    {_ms(lambda: json.loads(text), args.repeat):8.1f} ms")
    print(f"  state text:                    {len(text) / 1e6:8.2f} MB")


if __name__ == "__main__":
    main()
