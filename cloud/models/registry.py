"""The model registry's rules, for the HTTP API and the CLI alike: what an upload must be, and which rules apply where.

An upload is a model package (``shared.modelpackage``): it is read and
checked whole before anything is stored — its members, limits and the card
against the schema; and, where onnxruntime is installed, the model is loaded,
its input and output shapes checked against the schema and its test vectors
run. The package is then stored whole as the next version of the card's
name; the same bytes uploaded again answer the version they have already.

Assignments say which version scores which devices: one rule per device, per
edge and for the fleet; a device is scored by the most specific rule that
names it (device, then the edge it belongs to, then the fleet). An edge reads
the rules that apply to it (``for_edge``) and resolves them itself.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import threading
import time
from collections.abc import Iterable

from cloud.identities import UnknownIdentity
from cloud.storage.base import Storage
from cloud.storage.registry import SCOPES, Assignment, ModelVersion, NewModel, UnknownModel
from shared.errors import InputError
from shared.frame import DEVICE_ID_PATTERN
from shared.modelpackage import MAX_PACKAGE, MODEL_NAME_PATTERN, ModelPackage, read_package

__all__ = ["MAX_PACKAGE_BYTES", "MODEL_NAME_PATTERN", "assign", "check_package", "check_rule", "effective",
           "for_edge", "unassign", "upload"]

MAX_PACKAGE_BYTES = MAX_PACKAGE
_DEVICE = re.compile(DEVICE_ID_PATTERN)
# Checking a package holds it, its members and an onnxruntime session in memory: two at a time per process.
_CHECKS = threading.BoundedSemaphore(2)


def _onnxruntime_installed() -> bool:
    try:
        return importlib.util.find_spec("onnxruntime") is not None
    except (ImportError, ValueError):
        return False


def check_package(data: bytes) -> ModelPackage:
    """The package read and checked; InputError saying what is wrong. Blocking (unzips, loads the model):
    call it in a thread."""
    with _CHECKS:
        package = read_package(data)
        if _onnxruntime_installed():
            from shared.modelrun import ModelRunner, run_test_vectors

            run_test_vectors(ModelRunner(package, threads=1))
    return package


async def upload(storage: Storage, data: bytes, by: str) -> tuple[ModelVersion, bool]:
    """Check a package and store it as the next version of its name; (version, False) when stored already."""
    package = await asyncio.to_thread(check_package, data)
    card, schema = package.card, package.schema
    return await storage.put_model(NewModel(
        name=card.name, sha256=package.sha256, kind=schema.kind, schema=schema.model_dump_json(),
        card=card.model_dump_json(), package=data, uploaded_by=by, uploaded_at=time.time_ns() // 1000))


async def check_rule(storage: Storage, scope: str, target: str | None, *, known_edge: bool = True) -> str | None:
    """The rule's target as stored (None for the fleet); InputError for a target that does not fit the scope,
    UnknownIdentity for an edge that is not registered (with ``known_edge``)."""
    if scope not in SCOPES:
        raise InputError(f"scope {scope!r}: choose device, edge or fleet", "scope")
    if scope == "fleet":
        if target:
            raise InputError("the fleet rule has no target; leave it out", "target")
        return None
    if not target or not _DEVICE.match(target):
        raise InputError(f"a {scope} rule names its {scope} (letters, digits and . _ : -, at most 64)", "target")
    if scope == "edge" and known_edge and target not in {e["name"] for e in await storage.identities("edge")}:
        raise UnknownIdentity(f"no edge named {target!r} (twincloud edge list shows them)", "target")
    return target


async def assign(storage: Storage, scope: str, target: str | None, model: str, version: int,
                 by: str) -> Assignment:
    """Make ``model`` ``version`` the rule of a scope target (it replaces the one it had; recorded)."""
    target = await check_rule(storage, scope, target)
    if not re.match(MODEL_NAME_PATTERN, model):
        raise UnknownModel(f"no model named {model[:64]!r}", "model")
    return await storage.assign(scope, target, model, version, by, time.time_ns() // 1000)


async def unassign(storage: Storage, scope: str, target: str | None, by: str) -> bool:
    """Remove the rule of a scope target (recorded); False when it had none."""
    target = await check_rule(storage, scope, target, known_edge=False)  # an edge revoked since keeps its rule
    return await storage.unassign(scope, target, by, time.time_ns() // 1000)


def effective(rules: Iterable[Assignment], device: str, owner: str | None) -> Assignment | None:
    """The rule that scores ``device`` (which belongs to ``owner``, None when to no edge yet): its device rule,
    else its edge's rule, else the fleet rule."""
    by_key = {(a.scope, a.target): a for a in rules}
    return (by_key.get(("device", device)) or (by_key.get(("edge", owner)) if owner else None)
            or by_key.get(("fleet", None)))


async def for_edge(storage: Storage, edge: str) -> list[Assignment]:
    """The rules that apply to an edge: device rules of devices it owns or that no edge owns yet, its edge
    rule and the fleet rule. UnknownIdentity when no such edge is registered."""
    if edge not in {e["name"] for e in await storage.identities("edge")}:
        raise UnknownIdentity(f"no edge named {edge!r}", "edge_id")
    owners = {d.name: d.owner for d in await storage.device_records()}
    return [a for a in await storage.assignments()
            if (a.scope == "device" and owners.get(a.target or "") in (edge, None))
            or (a.scope == "edge" and a.target == edge) or a.scope == "fleet"]
