"""Sending one sync batch: the wire format, the HTTP exchange, and retries until the cloud answers for it.

Transient failures (connection errors, 5xx, 429/503, 408 when the cloud timed
the upload out, 409 when a newer request of this edge superseded it) are
retried with exponential backoff and jitter (tenacity), honouring Retry-After; 401/403/404 wait the
longest delay (a configuration problem: don't hammer the cloud). A batch the
cloud refuses for good raises ``SyncRefused`` (a 4xx) or ``SyncTooLarge`` (413)
for the uplink to deal with.
"""

from __future__ import annotations

import gzip
import json
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import msgpack
from pydantic import ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

from edge import __version__
from edge.config import UplinkConfig
from edge.store import StoredAlert, StoredEvent, StoredRow
from shared.batch import SENT_AT_HEADER, EdgeHealth, SyncAck
from shared.errors import TwinedgeError

__all__ = ["LinkState", "QueuedDocument", "Sender", "SyncRefused", "SyncRetry", "SyncTooLarge", "UplinkError",
           "cloud_client", "encode_batch"]

log = logging.getLogger(__name__)

SYNC_PATH = "/api/v1/sync/batches"
_RETRY_AFTER_MAX = 3600.0
# 408: the upload did not arrive in time; 409: a newer request of this edge took its place; 429: busy.
# None says anything about the batch itself: it is sent again, never set aside.
_TRANSIENT = frozenset({408, 409, 429})


class UplinkError(TwinedgeError):
    """The uplink cannot start (unreadable token or CA file)."""


class SyncRetry(TwinedgeError):
    """A transient failure: the same batch is sent again later."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class SyncRefused(TwinedgeError):
    """The cloud refused the batch for good (a 4xx other than auth, 408, 409, 413 or 429). ``paths`` are the
    paths of the problems the cloud listed (``documents``: a cloud older than this edge that does not take
    documents)."""

    def __init__(self, message: str, *, paths: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.paths = paths


class SyncTooLarge(TwinedgeError):
    """413: the batch is over the cloud's limits."""


@dataclass
class LinkState:
    """What `twinedge status` shows about the link to the cloud."""

    state: str = "starting"  # starting, idle, sending, retrying, refused_auth
    since: float = field(default_factory=time.time)
    last_sync: float | None = None
    last_error: str | None = None
    retry_in: float | None = None
    frames_sent: int = 0
    alerts_sent: int = 0
    batches: int = 0
    quarantined: int = 0
    alerts_quarantined: int = 0
    events_sent: int = 0
    events_quarantined: int = 0
    documents_sent: int = 0
    documents_quarantined: int = 0

    def set(self, state: str, error: str | None = None) -> None:
        if state != self.state:
            self.state, self.since = state, time.time()
        if error is not None:
            self.last_error = error


class QueuedDocument(Protocol):
    """A document as the queue holds it (``edge.documentqueue.StoredDocument``): its sequence and its MessagePack."""

    @property
    def seq(self) -> int: ...

    @property
    def payload(self) -> bytes: ...


def encode_batch(packer: msgpack.Packer, edge_id: str, rows: Sequence[StoredRow], health: EdgeHealth,
                 compression: str, alerts: Sequence[StoredAlert] = (), events: Sequence[StoredEvent] = (),
                 documents: Sequence[QueuedDocument] = ()) -> bytes:
    """A SyncBatch in MessagePack, the stored alerts, events, documents and frames spliced in as they are (no
    re-encoding).

    ``alerts``, ``events`` and ``documents`` are left out when there are none: such a batch is one an older cloud
    takes too.
    """
    pack = packer.pack
    parts = [
        packer.pack_map_header(4 + bool(alerts) + bool(events) + bool(documents)),
        pack("edge_id"), pack(edge_id),
        pack("sent_at"), pack(time.time()),
        pack("health"), pack(health.model_dump(mode="json")),
    ]
    if alerts:
        parts += [pack("alerts"), packer.pack_array_header(len(alerts))]
        for alert in alerts:
            parts += [packer.pack_map_header(2), pack("seq"), pack(alert.seq), pack("alert"), alert.payload]
    if events:
        parts += [pack("events"), packer.pack_array_header(len(events))]
        for event in events:
            parts += [packer.pack_map_header(2), pack("seq"), pack(event.seq), pack("event"), event.payload]
    if documents:
        parts += [pack("documents"), packer.pack_array_header(len(documents))]
        for doc in documents:
            parts += [packer.pack_map_header(2), pack("seq"), pack(doc.seq), pack("document"), doc.payload]
    parts += [pack("frames"), packer.pack_array_header(len(rows))]
    for row in rows:
        parts += [packer.pack_map_header(2), pack("seq"), pack(row.seq), pack("frame"), row.payload]
    raw = b"".join(parts)
    if compression == "gzip":
        return gzip.compress(raw, compresslevel=1)
    if compression == "zstd":
        import zstandard  # optional: pip install zstandard

        return zstandard.ZstdCompressor(level=1).compress(raw)
    return raw


def _reason(response: httpx.Response) -> str:
    """The server's reason in one line (FastAPI's detail list or text)."""
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    if isinstance(detail, list):
        detail = "; ".join(_problem(d) for d in detail)
    return f"HTTP {response.status_code}: {str(detail)[:500]}"


def _problem(item: object) -> str:
    """One entry of the cloud's ``[{"path": ..., "message": ...}]`` list; a path-less one is its message."""
    if not isinstance(item, dict):
        return str(item)
    message = item.get("message", item.get("msg"))
    return f"{item['path']}: {message}" if item.get("path") else str(message)


def _paths(response: httpx.Response) -> tuple[str, ...]:
    """The paths of the problems in the cloud's ``{"detail": [{"path": ...}]}``, at most 50."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return ()
    if not isinstance(detail, list):
        return ()
    return tuple(str(d["path"])[:200] for d in detail[:50] if isinstance(d, dict) and d.get("path") is not None)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return min(max(float(value), 0.0), _RETRY_AFTER_MAX) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def cloud_client(config: UplinkConfig, transport: httpx.AsyncBaseTransport | None = None, *,
                 headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    """An HTTP client for the cloud as the uplink is configured (URL, token, CA, timeout); UplinkError if the
    token or CA file cannot be read. The uplink and the model downloader each use one."""
    base = {"Authorization": f"Bearer {_token(config)}", "User-Agent": f"twinedge/{__version__}", **(headers or {})}
    return httpx.AsyncClient(base_url=str(config.url), headers=base, verify=_verify(config),
                             timeout=config.timeout, transport=transport)


def _token(config: UplinkConfig) -> str:
    if config.token is not None:
        return config.token.get_secret_value()
    assert config.token_file is not None
    try:
        token = config.token_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UplinkError(f"cannot read uplink.token_file {config.token_file}: {exc.strerror}") from None
    if not token:
        raise UplinkError(f"uplink.token_file {config.token_file} is empty")
    return token


def _verify(config: UplinkConfig) -> ssl.SSLContext | bool:
    if config.ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(config.ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise UplinkError(f"cannot load uplink.ca_file {config.ca_file}: {exc}") from None


class Sender:
    """Posts batches to the cloud's sync endpoint with the edge's token; ``on_retry`` hears of each retry."""

    def __init__(self, config: UplinkConfig, link: LinkState, *, on_retry: Callable[[], None]) -> None:
        self.config = config
        self.link = link
        self.on_retry = on_retry

    def client(self, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
        """The HTTP client for the uplink's lifetime; reads the token and CA files (UplinkError if it cannot)."""
        headers = {"Content-Type": "application/msgpack"}
        if self.config.compression != "none":
            headers["Content-Encoding"] = self.config.compression
        return cloud_client(self.config, transport, headers=headers)

    async def deliver(self, client: httpx.AsyncClient, body: bytes) -> SyncAck:
        """Send one batch until the cloud answers for it; raises SyncRefused or SyncTooLarge when it refuses."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(SyncRetry), wait=self._wait, before_sleep=self._before_sleep, reraise=True
        )
        if self.link.state not in ("retrying", "refused_auth"):  # those stay shown until the cloud answers
            self.link.set("sending")
        async for attempt in retrying:
            with attempt:
                ack = await self._post(client, body)
        self.link.set("sending")
        self.link.last_sync = time.time()
        self.link.retry_in = None
        return ack

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        backoff = wait_random_exponential(multiplier=self.config.retry_initial, max=self.config.retry_max)(state)
        if isinstance(exc, SyncRetry) and exc.retry_after is not None:
            return exc.retry_after
        if isinstance(exc, SyncRetry) and exc.status in (401, 403, 404):
            return self.config.retry_max  # a config problem: don't hammer the cloud
        return backoff

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        self.link.retry_in = delay
        self.on_retry()
        refused = isinstance(exc, SyncRetry) and exc.status in (401, 403)
        self.link.set("refused_auth" if refused else "retrying", str(exc))  # refused_auth: for `status`
        if state.attempt_number == 1:  # one WARNING per outage; each later try at DEBUG
            log.warning("cannot sync with the cloud: %s; retrying in %.1f s (data stays queued)", exc, delay)
        else:
            log.debug("sync retry %d: %s; next in %.1f s", state.attempt_number, exc, delay)

    async def _post(self, client: httpx.AsyncClient, body: bytes) -> SyncAck:
        try:
            response = await client.post(SYNC_PATH, content=body, headers={SENT_AT_HEADER: f"{time.time():.3f}"})
        except httpx.TransportError as exc:
            where = self.config.shown_url
            raise SyncRetry(f"cannot reach the cloud at {where} ({type(exc).__name__}: {exc})") from None
        status = response.status_code
        if status == 200:
            try:
                return SyncAck.model_validate(json.loads(response.content))
            except (ValueError, ValidationError) as exc:
                raise SyncRetry(f"the cloud answered with an unreadable acknowledgement: {exc}") from None
        reason = _reason(response)
        if status in (401, 403):
            raise SyncRetry(f"the cloud refused this edge's token ({reason}); check uplink.token_file",
                            status=status)
        if status == 413:
            raise SyncTooLarge(reason)
        if status in (404, 405):
            raise SyncRetry(f"no sync endpoint at {self.config.shown_url} ({reason}); check uplink.url",
                            status=status)
        if status in _TRANSIENT or status >= 500:
            raise SyncRetry(reason, status=status, retry_after=_retry_after(response))
        raise SyncRefused(reason, paths=_paths(response))

    def snapshot(self) -> dict[str, Any]:
        link = self.link
        return {
            "url": self.config.shown_url, "state": link.state, "since": link.since, "last_sync": link.last_sync,
            "last_error": link.last_error, "retry_in": link.retry_in, "frames_sent": link.frames_sent,
            "alerts_sent": link.alerts_sent, "batches": link.batches, "quarantined_by_cloud": link.quarantined,
            "alerts_quarantined_by_cloud": link.alerts_quarantined, "events_sent": link.events_sent,
            "events_quarantined_by_cloud": link.events_quarantined,
            "documents_sent": link.documents_sent, "documents_quarantined_by_cloud": link.documents_quarantined,
        }
