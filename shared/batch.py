"""The sync contract between an edge and the cloud: a batch of sequenced frames and its ack.

Every frame an edge stores gets a per-edge sequence number that only grows. The
cloud stores a frame at most once per (edge, sequence) and answers with
``acked_through``: every frame of the batch with a sequence at or below it is
stored (or was already stored, or was refused for good), so the edge may delete
exactly those.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from shared.frame import DEVICE_ID_PATTERN

__all__ = ["AlertEvent", "Document", "DocumentKind", "EVENT_KINDS", "EVENT_LEVELS", "EdgeEvent", "EdgeHealth",
           "EventKind", "EventLevel", "MAX_ALERTS", "MAX_DOCUMENTS", "MAX_DOCUMENT_BYTES", "MAX_DROP_REASONS",
           "MAX_EVENTS", "MAX_EVENT_MESSAGE", "MAX_MODEL_REPORTS", "MAX_NAME", "MAX_SOURCES", "MAX_STATE",
           "ModelReport", "Rejection", "SENT_AT_HEADER", "SequencedAlert", "SequencedDocument", "SequencedEvent",
           "SequencedFrame", "SyncAck", "SyncBatch", "levels_up_to"]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _without_nul(text: str) -> str:
    return text.replace("\x00", "") if "\x00" in text else text


# Free text from the edges (messages, names, states) loses its NUL characters on the way in: PostgreSQL's text
# holds none, and a batch refused for one would be sent again forever, its frames with it.
Text = Annotated[str, AfterValidator(_without_nul)]


MAX_DROP_REASONS = 32
MAX_SOURCES = 1024  # an edge has at most 1,000 sources (edge config) and its MQTT ingest
MAX_NAME = 64  # characters of a drop reason or a source name
MAX_STATE = 64  # characters of a source's state
OTHER_DROPS = "(other reasons)"
MORE_SOURCES = "(more sources)"
COUNT_MAX = 2**63 - 1
Count = Annotated[int, Field(ge=0, le=COUNT_MAX)]
MAX_ALERTS = 10_000  # alert events in one batch
MAX_MODEL_REPORTS = 1024  # devices with a model in one health report
MAX_PSI = 16  # input columns named in a drift report
Finite = Annotated[float, Field(allow_inf_nan=False)]
ModelName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


class ModelReport(_Wire):
    """How the model of one device is doing on the edge: serving, and its drift against the training data.

    ``drift`` is judged by the largest population stability index (PSI) over the model's inputs: below 0.1
    ``ok``, from 0.1 ``warn``, from 0.25 ``drift``; ``unknown`` until enough rows were scored. ``psi`` names at
    most 16 inputs, the largest first.
    """

    model: ModelName
    version: int = Field(ge=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    state: Literal["serving", "rejected", "failed"]
    message: Text | None = Field(None, max_length=512)
    last_score: Finite | None = None
    last_scored_at: Finite | None = None
    drift: Literal["ok", "warn", "drift", "unknown"] = "unknown"
    psi: dict[Annotated[Text, Field(max_length=256)], Finite] = Field(default_factory=dict, max_length=MAX_PSI)
    rows: Count = Field(0, description="scored rows the drift statistics cover")


class EdgeHealth(_Wire):
    """What the edge reports about itself with every batch.

    The cloud keeps a bounded report (``bounded``): a report over the limits is
    shortened, never refused, since the frames that travel with it are good.
    """

    queue_depth: Count = Field(description="frames waiting in the edge queue")
    oldest_age_s: float | None = Field(default=None, ge=0, allow_inf_nan=False,
                                       description="age of the oldest queued frame, s")
    drops: dict[Text, Count] = Field(
        default_factory=dict, description="frames dropped, by reason; reasons starting with alert: count model alerts")
    quarantined: Count = Field(default=0, description="frames set aside as invalid")
    sources: dict[Text, Text] = Field(default_factory=dict, description="source name -> health state")
    models: dict[Annotated[str, Field(pattern=DEVICE_ID_PATTERN)], ModelReport] = Field(
        default_factory=dict, max_length=MAX_MODEL_REPORTS, description="device -> its model and drift")

    def bounded(self) -> tuple[EdgeHealth, list[str]]:
        """This report within the limits, and a note for each thing that was cut.

        At most ``MAX_DROP_REASONS`` drop reasons, the largest counts (the rest summed under
        ``OTHER_DROPS``); at most ``MAX_SOURCES`` sources (the number left out under
        ``MORE_SOURCES``); names cut to ``MAX_NAME`` characters and states to ``MAX_STATE``.
        """
        notes: list[str] = []
        drops: dict[str, int] = {}
        for reason, count in self.drops.items():
            key = _cut(reason, MAX_NAME)
            drops[key] = min(COUNT_MAX, drops.get(key, 0) + count)
        if len(drops) > MAX_DROP_REASONS:
            ranked = sorted(drops.items(), key=lambda item: (-item[1], item[0]))
            kept, rest = ranked[:MAX_DROP_REASONS - 1], ranked[MAX_DROP_REASONS - 1:]
            drops = dict(kept)
            drops[OTHER_DROPS] = min(COUNT_MAX, drops.get(OTHER_DROPS, 0) + sum(count for _, count in rest))
            notes.append(f"{len(self.drops):,} drop reasons; the {MAX_DROP_REASONS - 1} largest are kept and the "
                         f"rest summed under {OTHER_DROPS!r}")
        sources: dict[str, str] = {}
        for name, state in self.sources.items():
            sources.setdefault(_cut(name, MAX_NAME), _cut(state, MAX_STATE))
        if len(sources) > MAX_SOURCES:
            left_out = len(sources) - (MAX_SOURCES - 1)
            sources = dict(list(sources.items())[:MAX_SOURCES - 1])
            sources[MORE_SOURCES] = f"{left_out:,} more not shown"
            notes.append(f"{len(self.sources):,} sources; the first {MAX_SOURCES - 1} are kept")
        if any(len(k) > MAX_NAME for k in (*self.drops, *self.sources)) or any(
                len(v) > MAX_STATE for v in self.sources.values()):
            notes.append(f"names over {MAX_NAME} characters (states over {MAX_STATE}) are cut")
        if not notes:
            return self, notes
        return self.model_copy(update={"drops": drops, "sources": sources}), notes


class SequencedFrame(_Wire):
    """A frame as it travels to the cloud: its edge sequence and the frame as plain data.

    ``frame`` stays plain data here (any value, even one that is not a map) so
    that the cloud can validate every frame on its own and refuse only the bad
    ones; the edge sends ``TelemetryFrame.to_wire()``.
    """

    seq: int = Field(ge=1, le=2**63 - 1)
    frame: Any = Field(description="a TelemetryFrame as plain data (validated one by one)")


# The edge's clock at each attempt to send a batch (seconds since the epoch), beside the body's ``sent_at``,
# which is stamped once when the batch is packed: a batch resent after an outage keeps its body.
SENT_AT_HEADER = "X-Twinedge-Sent-At"


class AlertEvent(_Wire):
    """An alert raised or cleared by a model on the edge. Raised and cleared events of one alert share
    ``alert_id``; ``ts`` is when the condition began (raised) or ended (cleared); ``score`` is the score at
    raising and the peak at clearing."""

    alert_id: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")
    event: Literal["raised", "cleared"]
    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    ts: Finite
    model: ModelName
    version: int = Field(ge=1)
    score: Finite
    threshold: Finite | None = None
    label: Text | None = Field(None, max_length=64)
    message: Text | None = Field(None, max_length=256)


class SequencedAlert(_Wire):
    """An alert event with the edge's alert sequence (its own counter, apart from the frames')."""

    seq: int = Field(ge=1, le=2**63 - 1)
    alert: AlertEvent


EventLevel = Literal["operator", "technical", "developer"]
EVENT_LEVELS: tuple[EventLevel, ...] = ("operator", "technical", "developer")  # from the fewest readers' words on
# The kinds this version records. The wire takes any short snake_case kind, so that an older cloud keeps taking
# the events of a newer edge.
EVENT_KINDS: tuple[str, ...] = (
    "source_connected", "source_lost", "source_recovered", "source_degraded", "source_failed",
    "certificate_rejected", "queue_full", "queue_room_again",
    "model_swapped", "model_rejected", "model_failed", "drift_changed",
    "edge_started", "edge_stopped",
    "alarm_opened", "alarm_closed", "data_gap",
    "program_harvested", "program_invalid",
)
EventKind = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
MAX_EVENTS = 10_000  # edge events in one batch
MAX_EVENT_MESSAGE = 512
MAX_EVENT_DETAILS = 32  # keys of an event's details
EventDetail = (bool | Annotated[int, Field(ge=-COUNT_MAX, le=COUNT_MAX)] | Finite
               | Annotated[Text, Field(max_length=1024)] | None)


def levels_up_to(level: str) -> tuple[EventLevel, ...]:
    """The levels a reader at ``level`` sees: operator sees operator; technical adds technical; developer all."""
    return EVENT_LEVELS[:EVENT_LEVELS.index(level) + 1]


class EdgeEvent(_Wire):
    """Something an operator (or a technician, or a developer) must know about an edge, in plain words.

    ``level`` says for whom: ``operator`` (a person at the machine: what stopped, what the edge does about it),
    ``technical`` (a technician: connections made, policies applied), ``developer`` (detail for a bug report).
    ``kind`` is one of ``EVENT_KINDS`` (from this version); ``device`` and ``source`` name what it is about,
    where it is one.
    """

    ts: Finite = Field(description="when it happened, epoch seconds")
    level: EventLevel
    kind: EventKind
    edge: str = Field(pattern=DEVICE_ID_PATTERN)
    device: str | None = Field(None, pattern=DEVICE_ID_PATTERN)
    source: Text | None = Field(None, max_length=MAX_NAME)
    message: Text = Field(min_length=1, max_length=MAX_EVENT_MESSAGE)
    details: dict[Annotated[Text, Field(max_length=MAX_NAME)], EventDetail] = Field(
        default_factory=dict, max_length=MAX_EVENT_DETAILS, description="plain values for the technician")


class SequencedEvent(_Wire):
    """An edge event with the edge's event sequence (its own counter, apart from the frames' and alerts')."""

    seq: int = Field(ge=1, le=2**63 - 1)
    event: EdgeEvent


MAX_DOCUMENTS = 1_000  # documents in one batch
MAX_DOCUMENT_BYTES = 256 * 1024  # one document's body, as the edge encoded it
DocumentKind = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class Document(_Wire):
    """A record an edge harvested that is not a reading: a CNC program with its features, a cutting tool or
    another MTConnect asset. The cloud keeps the newest body per (edge, kind, key) and the history of changes.

    ``kind`` is ``program`` (body: ``shared.cnc.ProgramRecord`` as plain data) or ``asset`` (body:
    ``{"asset_type", "asset_id", "device_uuid", "timestamp", "xml", "removed"}``); the wire takes any short
    snake_case kind, so an older cloud keeps newer edges' documents. ``key`` identifies the thing (a program's
    content hash, an asset's id), ``device`` the machine it belongs to where one is known.
    """

    ts: Finite = Field(description="when it was harvested or changed, epoch seconds")
    kind: DocumentKind
    key: str = Field(min_length=1, max_length=256)
    device: str | None = Field(None, pattern=DEVICE_ID_PATTERN)
    source: str | None = Field(None, max_length=MAX_NAME)
    body: dict[str, Any] = Field(description="the record as plain JSON data; at most 256 KiB encoded")


class SequencedDocument(_Wire):
    """A document with the edge's document sequence (its own counter)."""

    seq: int = Field(ge=1, le=2**63 - 1)
    document: Document


class SyncBatch(_Wire):
    edge_id: str = Field(pattern=DEVICE_ID_PATTERN)
    sent_at: float
    frames: list[SequencedFrame] = Field(max_length=50_000)
    health: EdgeHealth
    alerts: list[SequencedAlert] = Field(default_factory=list, max_length=MAX_ALERTS,
                                         description="alert events, stored at most once per (edge, seq)")
    events: list[SequencedEvent] = Field(default_factory=list, max_length=MAX_EVENTS,
                                         description="edge events, stored at most once per (edge, seq)")
    documents: list[SequencedDocument] = Field(default_factory=list, max_length=MAX_DOCUMENTS,
                                               description="documents, stored at most once per (edge, seq)")


class Rejection(_Wire):
    seq: int
    reason: str


class SyncAck(_Wire):
    acked_through: int | None = Field(description="highest sequence the edge may delete through")
    stored: int = Field(ge=0, description="frames newly stored")
    duplicates: int = Field(ge=0, description="frames already stored before")
    rejected: list[Rejection] = Field(default_factory=list)
    alerts_acked_through: int | None = Field(None, description="highest alert sequence the edge may delete through")
    events_acked_through: int | None = Field(None, description="highest event sequence the edge may mark as synced")
    documents_acked_through: int | None = Field(None, description="highest document sequence the edge may delete "
                                                                  "through")
