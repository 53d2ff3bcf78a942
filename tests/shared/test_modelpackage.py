"""Model packages: built, read back, and refused with the reason when damaged or hostile; run by onnxruntime."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from shared.errors import InputError
from shared.modelpackage import MAX_MODEL, ModelAssignment, read_package, sha256_hex
from shared.modelrun import ModelRunner, run_test_vectors
from tests.mlkit import anomaly_graph, classifier_graph, make_package, make_schema


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {i.filename: archive.read(i) for i in archive.infolist()}


def test_a_package_reads_back_with_its_schema_card_and_hash() -> None:
    data, package = make_package(make_schema(("temp", "vib")), name="press-anomaly")
    assert package.sha256 == sha256_hex(data) and package.size == len(data)
    assert package.name == "press-anomaly" and package.schema.sensor_names == ["temp", "vib"]
    assert [s.name for s in package.card.feature_stats] == ["temp", "vib"]
    runner = ModelRunner(package)
    run_test_vectors(runner)
    result = runner.score(np.array([[0.0, 0.0], [3.0, 4.0]], dtype=np.float32))
    assert result.scores is not None
    assert result.scores.tolist() == pytest.approx([0.0, 12.5])


def test_the_same_parts_make_the_same_bytes() -> None:
    schema = make_schema()
    first, package = make_package(schema)
    from shared.modelpackage import build_package
    assert build_package(package.model, package.schema, package.card, package.card_md) == first


def test_a_classifier_gives_the_label_index_and_its_confidence() -> None:
    schema = make_schema(("a", "b", "c"), kind="classifier", labels=["idle", "run", "fault"])
    _, package = make_package(schema, model=classifier_graph(3, 3))
    result = ModelRunner(package).score(np.eye(3, dtype=np.float32))
    assert result.classes is not None and result.confidence is not None
    assert set(result.classes.tolist()) <= {0, 1, 2}
    assert ((result.confidence > 1 / 3) & (result.confidence <= 1)).all()


@pytest.mark.parametrize("damage, reason", [
    (lambda data: data[: len(data) // 2], "not a readable ZIP"),
    (lambda data: b"", "not a readable ZIP"),
    (lambda data: b"PK\x03\x04" + b"\0" * 100, "not a readable ZIP"),
    (lambda data: _zip({k: v for k, v in _members(data).items() if k != "schema.json"}), "missing schema.json"),
    (lambda data: _zip({**_members(data), "../evil.sh": b"rm -rf /"}), "unexpected members"),
    (lambda data: _zip({**_members(data), "card.json": b"{not json"}), "card"),
    (lambda data: _zip({**_members(data), "schema.json": b'{"kind": "anomaly"}'}), "schema"),
    (lambda data: _zip({**_members(data), "card.md": b"\xff\xfe\xfa"}), "card.md is not UTF-8"),
    (lambda data: _zip({**_members(data), "model.onnx": b""}), "model.onnx is empty"),
])
def test_a_damaged_package_is_refused_with_the_reason(damage, reason) -> None:  # type: ignore[no-untyped-def]
    data, _ = make_package()
    with pytest.raises(InputError, match=reason):
        read_package(damage(data))


def _corrupt_model_stream(data: bytes) -> bytes:
    """The package with the deflate stream of model.onnx overwritten (its header and sizes intact)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo("model.onnx")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    return data[:start] + bytes([0xFF]) * 16 + data[start + 16:]


def _ragged_outputs(data: bytes) -> bytes:
    members = _members(data)
    card = json.loads(members["card.json"])
    card["test_vectors"]["outputs"][1] = [0.1, 0.2]
    return _zip({**members, "card.json": json.dumps(card).encode()})


@pytest.mark.parametrize("damage, reason", [
    (_corrupt_model_stream, "the package is damaged"),
    (_ragged_outputs, "the output rows differ in length"),
])
def test_a_package_that_would_break_its_reader_is_refused(damage, reason) -> None:  # type: ignore[no-untyped-def]
    data, _ = make_package()
    with pytest.raises(InputError, match=reason):
        read_package(damage(data))


def test_a_zip_bomb_stops_at_the_member_limit() -> None:
    data, _ = make_package()
    members = _members(data)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in ("schema.json", "card.json", "card.md"):
            archive.writestr(name, members[name])
        archive.writestr("model.onnx", b"\0" * (MAX_MODEL + 10))  # 48 MiB of zeros packs to ~50 kB
    bomb = out.getvalue()
    assert len(bomb) < 1_000_000
    with pytest.raises(InputError, match="model.onnx unpacks to"):
        read_package(bomb)


def test_a_card_for_other_inputs_is_refused() -> None:
    _, package = make_package(make_schema(("temp", "vib")))
    other = make_schema(("temp", "vib", "rpm"))
    from shared.modelpackage import build_package
    with pytest.raises(InputError, match="statistics for 2 inputs"):
        build_package(package.model, other, package.card, "")
    bad = _zip({**_members(make_package(make_schema(("temp", "vib")))[0]),
                "schema.json": other.model_dump_json().encode()})
    with pytest.raises(InputError, match="must match one for one"):
        read_package(bad)


def test_a_model_of_the_wrong_width_is_refused_at_open() -> None:
    schema = make_schema(("temp", "vib"))
    _, good = make_package(schema)
    wrong = type(good)(model=anomaly_graph(3), schema=good.schema, card=good.card, card_md="", sha256="0" * 64,
                       size=1)
    with pytest.raises(InputError, match=r"has shape \['N', 3\]; the schema needs \[N, 2\]"):
        ModelRunner(wrong)


def test_a_model_whose_answers_differ_from_its_card_is_refused() -> None:
    _, package = make_package(outputs=[[0.0], [0.0], [0.0], [0.0]])
    with pytest.raises(InputError, match="does not match its card"):
        run_test_vectors(ModelRunner(package))


def test_a_file_that_is_not_onnx_is_refused_at_open() -> None:
    _, good = make_package()
    broken = type(good)(model=good.model[:40], schema=good.schema, card=good.card, card_md="", sha256="0" * 64,
                        size=1)
    with pytest.raises(InputError, match="model.onnx does not load"):
        ModelRunner(broken)


def test_an_assignment_names_its_target_unless_fleet() -> None:
    base = {"model": "m", "version": 1, "sha256": "a" * 64, "size": 10}
    assert ModelAssignment(scope="fleet", **base).target is None
    assert ModelAssignment(scope="edge", target="edge-1", **base).target == "edge-1"
    with pytest.raises(ValueError, match="fleet assignment has no target"):
        ModelAssignment(scope="device", **base)
    with pytest.raises(ValueError, match="fleet assignment has no target"):
        ModelAssignment(scope="fleet", target="x", **base)
