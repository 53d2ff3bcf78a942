"""The test agent's HTTP side: ``/probe``, ``/current``, ``/sample``, ``/assets``, ``/asset/<id>`` (also
under a device name: ``/OKUMA/sample``), plain or streamed as ``multipart/x-mixed-replace``.

    /sample?from=&count=&interval=&heartbeat=   interval (ms) given: a stream of parts at most every
                                                interval, an empty Streams document (a heartbeat) after
                                                heartbeat ms (default 10,000) without data
    /current?at=&interval=                      the state, now or as of sequence ``at``

Errors are MTConnectError documents: OUT_OF_RANGE (``from`` before the buffer's first sequence or after
the next one, ``count`` beyond the buffer, ``at`` outside the buffer; and, on a stream, a client that
fell behind the buffer, after which the stream ends), INVALID_REQUEST (a parameter that is not a whole
number, an unknown parameter), NO_DEVICE, ASSET_NOT_FOUND, INVALID_URI, UNSUPPORTED (not a GET).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import TYPE_CHECKING

from twinsim.mtconnect.documents import Header, assets_doc, error_doc, probe_doc, streams_doc
from twinsim.mtconnect.http import LAST_CHUNK, MAX_HEAD, BadRequest, Request, chunk, read_request, response_head
from twinsim.mtconnect.model import DeviceModel
from twinsim.mtconnect.store import Buffer, Record

if TYPE_CHECKING:
    from twinsim.mtconnect.agent import MTConnectAgent

__all__ = ["AgentServer"]

log = logging.getLogger(__name__)

XML = "text/xml; charset=UTF-8"
_COMMANDS = ("probe", "current", "sample", "assets", "asset")
_STATUS = {"OUT_OF_RANGE": 400, "INVALID_REQUEST": 400, "QUERY_ERROR": 400, "NO_DEVICE": 404,
           "ASSET_NOT_FOUND": 404, "INVALID_URI": 404, "UNSUPPORTED": 405}
_PARAMS = {"probe": set(), "current": {"at", "interval", "path", "deviceType"},
           "sample": {"from", "count", "interval", "heartbeat", "path", "deviceType"},
           "assets": {"type", "removed", "count", "device"}, "asset": set()}


class _Refused(Exception):
    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code, self.text = code, text


def _int(query: dict[str, str], name: str, default: int | None, low: int, high: int) -> int | None:
    text = query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise _Refused("INVALID_REQUEST", f"'{name}' must be a whole number (got {text[:40]!r})") from None
    if not low <= value <= high:
        raise _Refused("OUT_OF_RANGE", f"'{name}' must be {low}..{high} (got {value})")
    return value


class AgentServer:
    def __init__(self, agent: MTConnectAgent) -> None:
        self.agent = agent
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0
        self.requests = 0

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._client, host, port, limit=MAX_HEAD)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("MTConnect agent listening on http://%s:%d", host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self.disconnect_clients()
            for task in self._handlers:
                task.cancel()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await asyncio.gather(*self._handlers, return_exceptions=True)
                    await self._server.wait_closed()
            self._server = None

    @property
    def clients(self) -> int:
        """Open client connections."""
        return len(self._writers)

    def disconnect_clients(self) -> int:
        cut = len(self._writers)
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        return cut

    # --- connections ---

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            while True:
                try:
                    req = await read_request(reader)
                except BadRequest as exc:
                    await self._send(writer, exc.status, XML, self._error_xml("INVALID_REQUEST", str(exc)), False)
                    return
                if req is None:
                    return
                self.requests += 1
                if not await self._route(req, writer) or not req.keep_alive:
                    return
        except (ConnectionError, OSError):
            return
        except asyncio.CancelledError:
            # stop() cancels the handlers: asyncio's stream callback reports a handler task that ends
            # cancelled as an error, so this one ends normally; nothing waits on it but stop().
            return
        finally:
            self._handlers.discard(task)
            self._writers.discard(writer)
            writer.close()

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        await self.agent.open.wait()  # a stall holds every write
        if writer.transport.is_closing():
            raise ConnectionResetError("the connection was closed")
        writer.write(data)
        await writer.drain()

    async def _send(self, writer: asyncio.StreamWriter, status: int, ctype: str, body: str, keep: bool) -> bool:
        data = body.encode("utf-8")
        await self._write(writer, response_head(status, ctype, length=len(data), keep_alive=keep) + data)
        return keep

    def _header(self, buffer: Buffer, next_sequence: int | None = None) -> Header:
        a = self.agent
        return Header(version=a.version, instance_id=a.instance_id, buffer_size=buffer.size,
                      first_sequence=buffer.first_sequence, last_sequence=buffer.last_sequence,
                      next_sequence=buffer.next_sequence if next_sequence is None else next_sequence,
                      asset_buffer_size=a.assets.size, asset_count=a.assets.count)

    def _now(self) -> int:
        return self.agent.now_us()

    def _error_xml(self, code: str, text: str) -> str:
        return error_doc(self._header(self.agent.buffer), [(code, text)], self._now())

    # --- routing ---

    async def _route(self, req: Request, writer: asyncio.StreamWriter) -> bool:
        await self.agent.open.wait()
        keep = req.keep_alive
        try:
            if req.method != "GET":
                raise _Refused("UNSUPPORTED", f"only GET is supported (got {req.method[:20]})")
            device, command, rest = self._split(req.path)
            unknown = set(req.query) - _PARAMS[command]
            if unknown:
                raise _Refused("INVALID_REQUEST", f"unknown parameter {sorted(unknown)[0][:40]!r} for /{command}")
            if command == "probe":
                h = self._header(self.agent.buffer)
                xml = "<Devices>" + "".join(self.agent.device_xml[d.uuid] for d in device) + "</Devices>"
                return await self._send(writer, 200, XML, probe_doc(h, xml, self._now()), keep)
            if command == "current":
                return await self._current(req, writer, device)
            if command == "sample":
                return await self._sample(req, writer, device)
            return await self._assets(req, writer, command, rest)
        except _Refused as exc:
            return await self._send(writer, _STATUS[exc.code], XML, self._error_xml(exc.code, exc.text), keep)

    def _split(self, path: str) -> tuple[list[DeviceModel], str, list[str]]:
        parts = [p for p in path.split("/") if p]
        devices = list(self.agent.devices)
        if parts and parts[0] not in _COMMANDS:
            named = [d for d in devices if parts[0] in (d.name, d.uuid)]
            if not named:
                if len(parts) == 1:
                    raise _Refused("INVALID_URI", f"no such request: /{parts[0][:60]}")
                raise _Refused("NO_DEVICE", f"no device named {parts[0][:60]!r}")
            devices, parts = named, parts[1:]
        command = parts[0] if parts else "probe"
        if command not in _COMMANDS or (command != "asset" and len(parts) > 1) or (command == "asset"
                                                                                   and len(parts) != 2):
            raise _Refused("INVALID_URI", f"no such request: {path[:80]}")
        return devices, command, parts[1:]

    # --- current and sample ---

    async def _current(self, req: Request, writer: asyncio.StreamWriter, devices: list[DeviceModel]) -> bool:
        buffer = self.agent.buffer
        at = _int(req.query, "at", None, 0, 2**63)
        interval = _int(req.query, "interval", None, 0, 2**31)
        if at is not None:
            if interval is not None:
                raise _Refused("INVALID_REQUEST", "'at' and 'interval' cannot be used together")
            if not buffer.first_sequence - 1 <= at < buffer.next_sequence:
                raise _Refused("OUT_OF_RANGE", f"'at' must be {buffer.first_sequence - 1}.."
                               f"{buffer.last_sequence} (got {at})")
            doc = self._current_doc(buffer, devices, at)
            return await self._send(writer, 200, XML, doc, req.keep_alive)
        if interval is None:
            return await self._send(writer, 200, XML, self._current_doc(buffer, devices, None), req.keep_alive)
        boundary = await self._open_stream(writer)
        while True:
            await self._part(writer, boundary, self._current_doc(self.agent.buffer, devices, None))
            await asyncio.sleep(interval / 1000)

    def _current_doc(self, buffer: Buffer, devices: list[DeviceModel], at: int | None) -> str:
        state = buffer.current if at is None else buffer.state_at(at)
        uuids = {d.uuid for d in devices}
        records = [r for r in state.records() if r.item.device_uuid in uuids]
        nxt = buffer.next_sequence if at is None else at + 1
        return streams_doc(self._header(buffer, nxt), records, devices, self._now())

    async def _sample(self, req: Request, writer: asyncio.StreamWriter, devices: list[DeviceModel]) -> bool:
        buffer = self.agent.buffer
        count = _int(req.query, "count", 100, 1, buffer.size)
        start = _int(req.query, "from", buffer.first_sequence, 0, 2**63)
        interval = _int(req.query, "interval", None, 0, 2**31)
        heartbeat = _int(req.query, "heartbeat", 10_000, 10, 600_000)
        assert count is not None and start is not None and heartbeat is not None
        self._check_from(buffer, start)
        if interval is None:
            records, nxt = self._select(buffer, start, count, devices)
            doc = streams_doc(self._header(buffer, nxt), records, devices, self._now())
            return await self._send(writer, 200, XML, doc, req.keep_alive)
        await self._stream(writer, devices, start, count, interval, heartbeat)
        return False

    @staticmethod
    def _check_from(buffer: Buffer, start: int) -> None:
        if start < buffer.first_sequence:
            raise _Refused("OUT_OF_RANGE", f"'from' must be greater than or equal to {buffer.first_sequence}")
        if start > buffer.next_sequence:
            raise _Refused("OUT_OF_RANGE", f"'from' must be less than or equal to {buffer.next_sequence}")

    def _select(self, buffer: Buffer, start: int, count: int, devices: list[DeviceModel]) -> tuple[list[Record], int]:
        """Up to ``count`` observations of ``devices`` from ``start``; and the sequence to ask for next."""
        if len(devices) == len(self.agent.devices):
            records = list(buffer.scan(start, start + count))
            return records, (records[-1].sequence + 1 if records else start)
        uuids = {d.uuid for d in devices}
        records = []
        for rec in buffer.scan(start, buffer.next_sequence):
            if rec.item.device_uuid in uuids:
                records.append(rec)
                if len(records) == count:
                    return records, rec.sequence + 1
        return records, buffer.next_sequence

    async def _open_stream(self, writer: asyncio.StreamWriter) -> bytes:
        boundary = secrets.token_hex(16).encode()
        ctype = "multipart/x-mixed-replace;boundary=" + boundary.decode()
        await self._write(writer, response_head(200, ctype, length=None, keep_alive=False))
        return boundary

    async def _part(self, writer: asyncio.StreamWriter, boundary: bytes, doc: str) -> None:
        body = doc.encode("utf-8")
        head = b"--%s\r\nContent-type: text/xml\r\nContent-length: %d\r\n\r\n" % (boundary, len(body))
        await self._write(writer, chunk(head + body + b"\r\n"))

    async def _stream(self, writer: asyncio.StreamWriter, devices: list[DeviceModel], pos: int, count: int,
                      interval: int, heartbeat: int) -> None:
        boundary = await self._open_stream(writer)
        agent = self.agent
        buffer = agent.buffer
        loop = asyncio.get_running_loop()
        due = loop.time() + heartbeat / 1000  # a heartbeat when nothing was sent for this long
        while True:
            if agent.buffer is not buffer:  # a restart ends the stream (and cuts the connection) ...
                if not agent.streams_survive_restart:
                    return
                buffer = agent.buffer  # ... unless it keeps clients: the new instance from its start
                pos = buffer.first_sequence
            if pos < buffer.first_sequence:
                text = f"the client fell behind: sequence {pos} is no longer in the buffer (first is " \
                       f"{buffer.first_sequence})"
                await self._part(writer, boundary, self._error_xml("OUT_OF_RANGE", text))
                await self._write(writer, LAST_CHUNK)
                return
            if pos < buffer.next_sequence:
                # changes of other devices move ``pos`` on without a part: they do not put off the heartbeat
                records, pos = self._select(buffer, pos, count, devices)
                if records or loop.time() >= due:
                    await self._part(writer, boundary, streams_doc(self._header(buffer, pos), records, devices,
                                                                   self._now()))
                    due = loop.time() + heartbeat / 1000
                await asyncio.sleep(interval / 1000)
                continue
            try:
                async with asyncio.timeout_at(due):
                    await agent.changed()
            except TimeoutError:
                await self._part(writer, boundary, streams_doc(self._header(buffer, pos), [], devices, self._now()))
                due = loop.time() + heartbeat / 1000

    # --- assets ---

    async def _assets(self, req: Request, writer: asyncio.StreamWriter, command: str, rest: list[str]) -> bool:
        store = self.agent.assets
        if command == "asset":
            ids = [i for i in rest[0].split(";") if i]
            found = [store.get(i) for i in ids]
            missing = [i for i, a in zip(ids, found, strict=True) if a is None]
            if missing or not ids:
                raise _Refused("ASSET_NOT_FOUND", f"Cannot find asset: {(missing or [''])[0][:80]}")
            chosen = [a for a in found if a is not None]
        else:
            count = _int(req.query, "count", 100, 1, store.size)
            removed = req.query.get("removed", "false") == "true"
            kind = req.query.get("type")
            chosen = [a for a in store.newest_first() if (removed or not a.removed)
                      and (kind is None or a.asset_type == kind)][:count]
        doc = assets_doc(self._header(self.agent.buffer), chosen, self._now())
        return await self._send(writer, 200, XML, doc, req.keep_alive)
