"""``pip install .[edge]`` installs the ``twincloud`` command too: there it says which extra to install; and the
edge's model features load without anything the cloud installs.

An edge-only install is reproduced in a subprocess: every module of a
distribution that ``twinedge[edge]`` (as pyproject.toml declares it) does not
pull in (FastAPI, scipy, trimesh, ...) is made unimportable before the code
runs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]

_RUN = """
import importlib.abc, json, sys

BLOCKED = set(json.loads(sys.argv[1]))

class EdgeOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, EdgeOnly())
from cloud.cli import main
sys.exit(main(sys.argv[2:]))
"""

_FEATURES = _RUN.split("from cloud.cli")[0] + """
import numpy as np
from shared.features import window_features
from shared.modelschema import load_schema, raw_inputs
schema = load_schema({"kind": "anomaly", "sensors": [{"name": "vib"}], "mode": "window", "features": ["rms"],
                      "window": {"length": 4, "step": 4, "interval_s": 1}, "threshold": 1,
                      "scaling": {"mean": [0], "scale": [1]}})
print(json.dumps(raw_inputs(schema, np.full((4, 1), 3.0)).tolist()))
print(json.dumps(sorted(m for m in sys.modules if m.partition(".")[0] in {"scipy", "sklearn", "pandas", "onnx"})))
"""


def _closure(requirements: list[Requirement], extras: set[str]) -> set[str]:
    """Names of the distributions these requirements pull in, recursively (installed ones only)."""
    seen: set[str] = set()
    todo = [(r, extras) for r in requirements]
    while todo:
        req, active = todo.pop()
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in active | {""}):
            continue
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        todo += [(Requirement(r), set(req.extras)) for r in dist.requires or []]
    return seen


def _not_in_an_edge_install() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    edge = _closure([Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["edge"]],
                    set())
    blocked = set()
    for module, dists in metadata.packages_distributions().items():
        names = {re.sub(r"[-_.]+", "-", d).lower() for d in dists}
        if not names & (edge | {"twinedge"}) and module not in sys.stdlib_module_names:
            blocked.add(module)
    return sorted(blocked)


@pytest.fixture(scope="module")
def blocked() -> list[str]:
    names = _not_in_an_edge_install()
    assert {"fastapi", "scipy", "trimesh", "uvicorn"} <= set(names)
    assert not {"pydantic", "msgpack", "httpx", "numpy"} & set(names)
    return names


@pytest.mark.parametrize("argv", [["--help"], ["serve"], ["edge", "list"], ["physics", "check", "a.json"]])
def test_twincloud_on_an_edge_only_install_names_the_extra_to_install(blocked: list[str], argv: list[str]) -> None:
    done = subprocess.run([sys.executable, "-c", _RUN, json.dumps(blocked), *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stdout == "" and "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("twincloud: ") and "pip install 'twinedge[cloud]'" in line


def test_the_edge_computes_model_features_without_the_cloud_extra(blocked: list[str]) -> None:
    done = subprocess.run([sys.executable, "-c", _FEATURES, json.dumps(blocked)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rows, foreign = (json.loads(line) for line in done.stdout.splitlines())
    assert rows == [[3.0]] and foreign == []


def test_the_modules_looked_for_first_belong_to_the_cloud_extra() -> None:
    from cloud.cli import SERVICE_MODULES

    cloud_extra = _closure([Requirement(r) for r in metadata.distribution("twinedge").requires or []
                            if 'extra == "cloud"' in r], {"cloud"})
    for module in SERVICE_MODULES:
        owners = {re.sub(r"[-_.]+", "-", d).lower() for d in metadata.packages_distributions()[module]}
        assert owners & cloud_extra, module


def test_an_edge_install_resolves_to_onnxruntime_and_numpy_and_no_training_library() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    edge = _closure([Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["edge"]],
                    set())
    assert {"onnxruntime", "numpy"} <= edge
    training = {"scikit-learn", "skl2onnx", "onnx", "pyarrow", "pandas", "scipy", "torch", "sympy", "river",
                "sktime", "onnxconverter-common"}
    assert not training & edge, f"the edge install would pull in {sorted(training & edge)}"
    train = _closure([Requirement(r) for r in project["optional-dependencies"]["train"]], set())
    assert {"scikit-learn", "skl2onnx", "onnx", "onnxruntime"} <= train  # what `twincloud model train` needs
