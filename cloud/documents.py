"""The edges' documents as the cloud takes them: each one checked on its own, so one bad document never costs
a batch its frames.

A batch's ``documents`` are plain data here. An entry whose ``seq`` is no sequence at all makes the batch
malformed (422, as a bad frame sequence does: no edge of ours sends one). Any other problem is the document's
own: it is stored with status ``invalid`` and a reason in plain words, and acknowledged like the others:

- the entry is no ``Document`` (a kind that is no short snake_case name, a missing key, ...);
- its body is over ``MAX_DOCUMENT_BYTES`` encoded (the body is not kept, only the reason);
- its time is not between 2000 and 2100;
- a ``program`` body that is no ``shared.cnc.ProgramRecord``, or whose key is not its sha256;
- an ``asset`` or ``mtconnect_device`` body that does not have the documented shape.

NUL characters are removed from every text of a document (its key, its source, the body's keys and values) before
anything else: PostgreSQL's text cannot hold one, and one in a file name or a comment must not fail the batch (the
edge would send it again forever); the edge's harvester removes them from what it reads as well.

A kind this cloud does not know is kept as it came (status ``ok``): a newer edge's documents are not lost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.batch import MAX_DOCUMENT_BYTES, MAX_DOCUMENTS, Document
from shared.cnc import ProgramRecord
from shared.errors import InputError
from shared.frame import DEVICE_ID_PATTERN, TS_MAX, TS_MIN
from shared.validation import validation_problems

__all__ = ["AssetBody", "DeviceModelBody", "DocumentIn", "ItemBody", "read_documents"]

_MAX_SEQ = 2**63 - 1
_MAX_REASON = 1000


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")  # a newer edge may add fields: the cloud reads what it knows


class AssetBody(_Body):
    """The body of an ``asset`` document (an MTConnect asset: a cutting tool, a file, ...)."""

    asset_type: str = Field(min_length=1, max_length=64)
    asset_id: str = Field(min_length=1, max_length=256)
    device_uuid: str | None = Field(None, max_length=256)
    timestamp: str = Field(max_length=64)
    xml: str = Field(max_length=MAX_DOCUMENT_BYTES)
    removed: bool = False


class ItemBody(_Body):
    id: str = Field(min_length=1, max_length=256)
    key: str = Field(min_length=1, max_length=256)
    name: str | None = Field(None, max_length=256)
    category: str = Field(pattern=r"^(SAMPLE|EVENT|CONDITION)$")
    type: str = Field(min_length=1, max_length=128)
    sub_type: str | None = Field(None, max_length=128)
    units: str | None = Field(None, max_length=128)


class DeviceModelBody(_Body):
    """The body of an ``mtconnect_device`` document: a device's data items as the edge keys them."""

    uuid: str = Field(min_length=1, max_length=256)
    name: str = Field(min_length=1, max_length=256)
    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    instance_id: int | None = Field(None, ge=0, le=_MAX_SEQ)
    items: list[ItemBody] = Field(default_factory=list, max_length=20_000)


Record = ProgramRecord | AssetBody | DeviceModelBody
_BODIES: dict[str, type[BaseModel]] = {"program": ProgramRecord, "asset": AssetBody,
                                       "mtconnect_device": DeviceModelBody}


@dataclass(frozen=True, slots=True)
class DocumentIn:
    """A document of a batch as the store takes it: ``ts`` in µs; ``body`` the JSON text kept (``{}`` when the
    body was not kept); ``record`` the body read as its kind's model (None for an invalid or unknown kind)."""

    seq: int
    ts: int
    kind: str
    key: str
    device: str | None
    source: str | None
    body: str
    status: str
    reason: str | None
    record: Record | None = None

    def row(self, edge: str, now_us: int) -> tuple[Any, ...]:
        return (edge, self.seq, self.ts, self.kind, self.key, self.device, self.source, self.body, self.status,
                self.reason, now_us)


def _without_nul(raw: Any) -> Any:
    """``raw`` (plain data from the wire) with every NUL character removed from its texts and mapping keys; walked
    with a stack, not recursion, so any depth the decoder let through is fine."""
    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("\x00", "") if "\x00" in value else value
        if isinstance(value, dict):
            copy: dict[Any, Any] = {}
            stack.append((copy, list(value.items())))
            return copy
        if isinstance(value, list):
            items: list[Any] = []
            stack.append((items, list(value)))
            return items
        return value

    stack: list[tuple[Any, list[Any]]] = []
    top = clean(raw)
    while stack:
        into, todo = stack.pop()
        for entry in todo:
            if isinstance(into, dict):
                into[clean(entry[0])] = clean(entry[1])
            else:
                into.append(clean(entry))
    return top


def _reason(problems: str) -> str:
    return problems if len(problems) <= _MAX_REASON else problems[:_MAX_REASON - 1] + "\u2026"


def _invalid(seq: int, raw: Any, reason: str, ts: int = 0) -> DocumentIn:
    """An invalid document: what can be read of its kind and key is kept for the reader, cut short."""
    doc = raw.get("document") if isinstance(raw, dict) else None
    doc = doc if isinstance(doc, dict) else {}
    kind, key = doc.get("kind"), doc.get("key")
    kind = kind[:32] if isinstance(kind, str) and kind else "?"
    key = key[:256] if isinstance(key, str) and key else "?"
    return DocumentIn(seq, ts, kind, key, None, None, "{}", "invalid", _reason(reason))


def _one(seq: int, raw: Any) -> DocumentIn:
    raw = _without_nul(raw)
    try:
        doc = Document.model_validate(raw.get("document") if isinstance(raw, dict) else None)
    except ValidationError as exc:
        return _invalid(seq, raw, "; ".join(str(p) for p in validation_problems(exc, Document, prefix="document")))
    try:
        body = json.dumps(doc.body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (ValueError, TypeError):
        return _invalid(seq, raw, "document.body: not plain JSON data (NaN, infinity or a value JSON has no "
                                  "form for)")
    ts = round(doc.ts * 1e6)
    if len(body.encode()) > MAX_DOCUMENT_BYTES:
        return DocumentIn(seq, ts, doc.kind, doc.key, doc.device, doc.source, "{}", "invalid",
                          f"document.body: {len(body.encode()):,} bytes encoded; at most {MAX_DOCUMENT_BYTES:,} "
                          "are kept (the body was not stored)")
    if not TS_MIN <= doc.ts <= TS_MAX:
        return DocumentIn(seq, 0, doc.kind, doc.key, doc.device, doc.source, "{}", "invalid",
                          f"document.ts: {doc.ts:g} is not between 2000 and 2100")
    model = _BODIES.get(doc.kind)
    if model is None:
        return DocumentIn(seq, ts, doc.kind, doc.key, doc.device, doc.source, body, "ok", None)
    try:
        record: Any = model.model_validate(doc.body)
    except ValidationError as exc:
        why = "; ".join(str(p) for p in validation_problems(exc, model, prefix="document.body"))
        return DocumentIn(seq, ts, doc.kind, doc.key, doc.device, doc.source, body, "invalid",
                          _reason(f"not a valid {doc.kind} record: {why}"))
    wanted = {"program": "sha256", "asset": "asset_id", "mtconnect_device": "uuid"}[doc.kind]
    if getattr(record, wanted) != doc.key:
        return DocumentIn(seq, ts, doc.kind, doc.key, doc.device, doc.source, body, "invalid",
                          f"document.key: a {doc.kind} document's key must be its body's {wanted} "
                          f"({str(getattr(record, wanted))[:80]!r}), not {doc.key[:80]!r}")
    return DocumentIn(seq, ts, doc.kind, doc.key, doc.device, doc.source, body, "ok", None, record)


def read_documents(entries: Any) -> tuple[list[DocumentIn], int | None]:
    """The documents of a batch, each checked on its own, and their highest sequence (None: there were none).

    InputError when the list itself is malformed: not a list, too long, or an entry without a sequence.
    """
    if entries is None:
        return [], None
    if not isinstance(entries, list):
        raise InputError("must be a list of {seq, document}", "documents")
    if len(entries) > MAX_DOCUMENTS:
        raise InputError(f"{len(entries):,} documents; at most {MAX_DOCUMENTS:,} in one batch", "documents")
    out: list[DocumentIn] = []
    seen: set[int] = set()
    for k, raw in enumerate(entries):
        seq = raw.get("seq") if isinstance(raw, dict) else None
        if type(seq) is not int or not 1 <= seq <= _MAX_SEQ:
            raise InputError("each document needs a seq, a whole number from 1", f"documents[{k}].seq")
        if seq in seen:  # the same sequence twice in one batch: the first counts
            continue
        seen.add(seq)
        out.append(_one(seq, raw))
    return out, max(seen, default=None)

