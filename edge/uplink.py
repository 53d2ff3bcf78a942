"""The uplink: sends the durable queue to the cloud and deletes only what the cloud acknowledged.

Batches are cut by count and bytes, MessagePack, compressed, and posted with the
edge's bearer token. Transient failures (connection errors, 5xx, 429/503) are
retried with exponential backoff and jitter, honouring Retry-After; a batch the
cloud refuses for good (4xx) is quarantined with the server's reason instead of
being retried forever. After an outage the newest data goes first and the
backlog is drained behind it, optionally under a bandwidth cap.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgpack
from pydantic import ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

from edge import __version__
from edge.config import UplinkConfig
from edge.store import Store, StoredRow, StoreError
from shared.batch import EdgeHealth, SyncAck
from shared.errors import TwinedgeError
from shared.frame import TelemetryFrame

__all__ = ["SyncRetry", "Uplink", "UplinkError"]

log = logging.getLogger(__name__)

SYNC_PATH = "/api/v1/sync/batches"
_RETRY_AFTER_MAX = 3600.0


class UplinkError(TwinedgeError):
    """The uplink cannot start (unreadable token or CA file)."""


class SyncRetry(TwinedgeError):
    """A transient failure: the same batch is sent again later."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class SyncRefused(TwinedgeError):
    """The cloud refused the batch for good (a 4xx other than auth, 413 or 429)."""


class SyncTooLarge(TwinedgeError):
    """413: the batch is over the cloud's limits."""


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A batch ready to send: its rows, whether they are backlog, the encoded body, the backlog split it assumed."""

    rows: list[StoredRow]
    backlog: bool
    body: bytes
    split: int | None


@dataclass
class LinkState:
    state: str = "starting"  # starting, idle, sending, retrying, refused_auth
    since: float = field(default_factory=time.time)
    last_sync: float | None = None
    last_error: str | None = None
    retry_in: float | None = None
    frames_sent: int = 0
    batches: int = 0
    quarantined: int = 0
    backlog_through: int | None = None

    def set(self, state: str, error: str | None = None) -> None:
        if state != self.state:
            self.state, self.since = state, time.time()
        if error is not None:
            self.last_error = error


def _reason(response: httpx.Response) -> str:
    """The server's reason in one line (FastAPI's detail list or text)."""
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    if isinstance(detail, list):
        detail = "; ".join(
            f"{d.get('path')}: {d.get('message', d.get('msg'))}" if isinstance(d, dict) else str(d) for d in detail
        )
    return f"HTTP {response.status_code}: {str(detail)[:500]}"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return min(max(float(value), 0.0), _RETRY_AFTER_MAX) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


class Uplink:
    """One task: ``run()``. ``on_commit`` is the store writer's hook that wakes it."""

    def __init__(
        self,
        config: UplinkConfig,
        store: Store,
        *,
        edge_id: str,
        health: Callable[[], Awaitable[EdgeHealth]],
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.edge_id = edge_id
        self.health = health
        self.transport = transport
        self.link = LinkState()
        self._wake = asyncio.Event()
        self._limit = config.batch_max_frames
        self._check_backlog = True
        self._tokens = float(config.backlog_bandwidth)
        self._tokens_at = time.monotonic()
        self._packer = msgpack.Packer(use_bin_type=True)
        self._last_post = 0.0

    async def on_commit(self, _frames: Sequence[TelemetryFrame]) -> None:
        self._wake.set()

    def snapshot(self) -> dict[str, Any]:
        link = self.link
        return {
            "url": self.config.shown_url, "state": link.state, "since": link.since, "last_sync": link.last_sync,
            "last_error": link.last_error, "retry_in": link.retry_in, "frames_sent": link.frames_sent,
            "batches": link.batches, "quarantined_by_cloud": link.quarantined,
            "backlog_through": link.backlog_through,
        }

    # --- setup ---------------------------------------------------------------

    def _token(self) -> str:
        if self.config.token is not None:
            return self.config.token.get_secret_value()
        assert self.config.token_file is not None
        try:
            token = self.config.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UplinkError(f"cannot read uplink.token_file {self.config.token_file}: {exc.strerror}") from None
        if not token:
            raise UplinkError(f"uplink.token_file {self.config.token_file} is empty")
        return token

    def _verify(self) -> ssl.SSLContext | bool:
        if self.config.ca_file is None:
            return True
        try:
            return ssl.create_default_context(cafile=str(self.config.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise UplinkError(f"cannot load uplink.ca_file {self.config.ca_file}: {exc}") from None

    # --- the loop ------------------------------------------------------------

    async def run(self) -> None:
        headers = {"Authorization": f"Bearer {self._token()}", "User-Agent": f"twinedge/{__version__}",
                   "Content-Type": "application/msgpack"}
        if self.config.compression != "none":
            headers["Content-Encoding"] = self.config.compression
        async with httpx.AsyncClient(
            base_url=str(self.config.url), headers=headers, verify=self._verify(),
            timeout=self.config.timeout, transport=self.transport,
        ) as client:
            log.info("uplink to %s started", self.config.shown_url)
            ahead: _Prepared | None = None
            while True:
                if ahead is None or (len(ahead.rows) < self._limit and not ahead.backlog
                                     and self._last_post + self.config.interval > time.monotonic()):
                    ahead = await self._prepare()
                rows, backlog, body = ahead.rows, ahead.backlog, ahead.body
                self._last_post = time.monotonic()
                if backlog and not await self._spend(len(body)):
                    ahead = None
                    continue  # live data arrived while the backlog waited for bandwidth
                ahead = await self._deliver_reading_ahead(client, rows, body)

    async def _prepare(self) -> _Prepared:
        rows, backlog = await self._next_batch()
        wait = self._last_post + self.config.interval - time.monotonic()
        if len(rows) < self._limit and not backlog and wait > 0:
            # A trickle of live data: gather for up to `interval` instead of one request per commit.
            await asyncio.sleep(wait)
            rows, backlog = await self._next_batch()
        body = await asyncio.to_thread(self._encode, rows, await self.health())
        return _Prepared(rows, backlog, body, self.link.backlog_through)

    async def _deliver_reading_ahead(self, client: httpx.AsyncClient, rows: list[StoredRow],
                                     body: bytes) -> _Prepared | None:
        """Deliver a batch while the next one is read and encoded; the next one if it is still the one to send.

        Batches still go one at a time: this only takes the edge's own work off the time
        each batch spends in flight. The batch read ahead is dropped when anything it
        assumed changed (a retry, a refusal, live data arriving during a backlog).
        """
        task = asyncio.create_task(self._read_ahead(rows), name="uplink-read-ahead")
        try:
            acked = await self._deliver(client, rows, body)
            ahead = await task
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait([task])
            if not task.cancelled():
                task.exception()  # seen: a batch that could not be read ahead is read again
        if ahead is None or not acked or self._check_backlog or self.link.backlog_through != ahead.split:
            return None
        if ahead.backlog and self._wake.is_set():
            return None  # frames were committed meanwhile: live data goes before the backlog
        return ahead

    async def _read_ahead(self, sent: list[StoredRow]) -> _Prepared | None:
        """What ``_next_batch`` will return once ``sent`` is acknowledged (and deleted), or None if unsure."""
        if self._check_backlog:
            return None
        first, last = sent[0].seq, sent[-1].seq

        def after(lo: int, hi: int | None = None) -> int:
            # ``sent`` holds the oldest rows of the range it was read from: the next read of that range
            # starts behind it.
            return last if lo < first and (hi is None or first <= hi) else lo

        limit, max_bytes, split = self._limit, self.config.batch_max_bytes, self.link.backlog_through
        self._wake.clear()
        try:
            backlog = False
            if split is None:
                rows = await self.store.read(after_seq=after(0), limit=limit, max_bytes=max_bytes)
            else:
                rows = await self.store.read(after_seq=after(split), limit=limit, max_bytes=max_bytes)
                if not rows:
                    backlog = True
                    rows = await self.store.read(after_seq=after(0, split), through_seq=split, limit=limit,
                                                 max_bytes=max_bytes)
        except StoreError as exc:
            log.debug("reading the next batch ahead failed (%s); it is read again after this one", exc)
            return None
        if not rows:
            return None
        body = await asyncio.to_thread(self._encode, rows, await self.health())
        return _Prepared(rows, backlog, body, split)

    async def _next_batch(self) -> tuple[list[StoredRow], bool]:
        """The next rows to send: live data first while a backlog is being drained."""
        limit, max_bytes = self._limit, self.config.batch_max_bytes
        while True:
            self._wake.clear()
            if self._check_backlog:
                self._check_backlog = False
                await self._maybe_split()
            split = self.link.backlog_through
            if split is None:
                rows = await self.store.read(limit=limit, max_bytes=max_bytes)
                if rows:
                    return rows, False
            else:
                live = await self.store.read(after_seq=split, limit=limit, max_bytes=max_bytes)
                if live:
                    return live, False
                backlog = await self.store.read(through_seq=split, limit=limit, max_bytes=max_bytes)
                if backlog:
                    return backlog, True
                log.info("backlog delivered; the uplink is back to sending frames as they come")
                self.link.backlog_through = None
                continue
            self.link.set("idle")
            await self._wake.wait()

    async def _maybe_split(self) -> None:
        depth = self.store.depth
        if depth <= 2 * self.config.batch_max_frames:
            return
        self.link.backlog_through = await self.store.newest_seq()
        cap = self.config.backlog_bandwidth
        log.warning(
            "%d frames are waiting for the cloud; sending new data first and the backlog behind it%s",
            depth, f" at up to {cap / 1000:.0f} kB/s" if cap else "",
        )

    async def _spend(self, size: int) -> bool:
        """Wait for the backlog's bandwidth budget; False when live data should go first."""
        rate = self.config.backlog_bandwidth
        if not rate:
            return True
        while True:
            now = time.monotonic()
            self._tokens = min(float(max(rate, size)), self._tokens + (now - self._tokens_at) * rate)
            self._tokens_at = now
            if self._tokens >= size:
                self._tokens -= size
                return True
            self._wake.clear()
            try:
                async with asyncio.timeout((size - self._tokens) / rate):
                    await self._wake.wait()
                return False
            except TimeoutError:
                continue

    def _encode(self, rows: Sequence[StoredRow], health: EdgeHealth) -> bytes:
        """A SyncBatch in MessagePack, the stored frames spliced in as they are (no re-encoding)."""
        pack = self._packer.pack
        parts = [
            self._packer.pack_map_header(4),
            pack("edge_id"), pack(self.edge_id),
            pack("sent_at"), pack(time.time()),
            pack("health"), pack(health.model_dump(mode="json")),
            pack("frames"), self._packer.pack_array_header(len(rows)),
        ]
        for row in rows:
            parts += [self._packer.pack_map_header(2), pack("seq"), pack(row.seq), pack("frame"), row.payload]
        raw = b"".join(parts)
        if self.config.compression == "gzip":
            return gzip.compress(raw, compresslevel=1)
        if self.config.compression == "zstd":
            import zstandard  # optional: pip install zstandard

            return zstandard.ZstdCompressor(level=1).compress(raw)
        return raw

    # --- one batch -----------------------------------------------------------

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
        self._check_backlog = True
        first = self.link.state != "retrying"
        self.link.set("retrying", str(exc))
        if first:
            log.warning("cannot sync with the cloud: %s; retrying in %.1f s (data stays queued)", exc, delay)
        else:
            log.debug("sync retry %d: %s; next in %.1f s", state.attempt_number, exc, delay)

    async def _deliver(self, client: httpx.AsyncClient, rows: list[StoredRow], body: bytes) -> bool:
        """Send one batch until the cloud answers for it; True when it acknowledged every row."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(SyncRetry), wait=self._wait, before_sleep=self._before_sleep, reraise=True
        )
        try:
            async for attempt in retrying:
                with attempt:
                    ack = await self._post(client, body)
        except (SyncTooLarge, SyncRefused) as exc:
            if len(rows) > 1:
                # Halve until the refusal is down to single frames: one damaged frame must
                # not send its whole batch to the quarantine.
                self._limit = max(1, len(rows) // 2)
                log.warning("the cloud refused a batch of %d frames (%s); retrying %d at a time",
                            len(rows), exc, self._limit)
                return False
            await self._quarantine(rows, str(exc))
            return False
        await self._apply(rows, ack)
        return ack.acked_through is not None and ack.acked_through >= rows[-1].seq

    async def _post(self, client: httpx.AsyncClient, body: bytes) -> SyncAck:
        self.link.set("sending")
        try:
            response = await client.post(SYNC_PATH, content=body)
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
            self.link.set("refused_auth", reason)
            raise SyncRetry(f"the cloud refused this edge's token ({reason}); check uplink.token_file",
                            status=status)
        if status == 413:
            raise SyncTooLarge(reason)
        if status in (404, 405):
            raise SyncRetry(f"no sync endpoint at {self.config.shown_url} ({reason}); check uplink.url", status=status)
        if status == 429 or status >= 500:
            raise SyncRetry(reason, status=status, retry_after=_retry_after(response))
        raise SyncRefused(reason)

    async def _apply(self, rows: list[StoredRow], ack: SyncAck) -> None:
        by_seq = {row.seq: row for row in rows}
        for rejection in ack.rejected:
            row = by_seq.get(rejection.seq)
            if row is not None:
                await self.store.quarantine(f"cloud:{row.device_id}", rejection.reason, row.payload)
                self.link.quarantined += 1
        if ack.rejected:
            log.warning("the cloud refused %d of %d frames (first: seq %d, %s); they are in the quarantine",
                        len(ack.rejected), len(rows), ack.rejected[0].seq, ack.rejected[0].reason)
        if ack.acked_through is not None:
            delivered = sum(1 for r in rows if r.seq <= ack.acked_through)
            await self.store.ack(ack.acked_through, from_seq=rows[0].seq, sent=delivered)
            self.link.frames_sent += delivered
        self.link.batches += 1
        self.link.last_sync = time.time()
        self.link.retry_in = None
        if self._limit < self.config.batch_max_frames:
            self._limit = min(self.config.batch_max_frames, self._limit * 2)

    async def _quarantine(self, rows: list[StoredRow], reason: str) -> None:
        log.error("the cloud refused frame seq %d of %s for good (%s); moved to the quarantine",
                  rows[0].seq, rows[0].device_id, reason)
        for row in rows:
            await self.store.quarantine(f"cloud:{row.device_id}", reason, row.payload)
        await self.store.ack(rows[-1].seq, from_seq=rows[0].seq)
        self.link.quarantined += len(rows)
