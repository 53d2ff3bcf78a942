"""Real asyncua servers for the OPC-UA tests, and helpers to wait on a source.

Not a test module itself: the OPC-UA test files import it. The server runs in
the test's event loop on 127.0.0.1; tests change values with the server's own
node API and watch what the source makes of them. Per-call sizes of Read and
CreateMonitoredItems requests are recorded through the server's callback
service, so a test can check that the client respected the operation limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import math
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.common.callback import CallbackType
from asyncua.crypto import cert_gen
from asyncua.crypto.permission_rules import User, UserRole
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from edge.sources import SourceState, build_source
from edge.sources.opcua import OpcUaSourceConfig
from edge.sources.opcua.source import OpcUaSource
from tests.support import CollectingSink

NS_URI = "urn:twinedge:test"
HUGE_TEXT = "x" * 1000

# name -> (initial value, variant type); the namespace index is 2 (the first registered one)
VARIABLES: dict[str, tuple[Any, ua.VariantType]] = {
    "Press.Temp": (21.5, ua.VariantType.Double),
    "Press.Count": (7, ua.VariantType.Int32),
    "Press.Running": (True, ua.VariantType.Boolean),
    "Press.Recipe": ("A-17", ua.VariantType.String),
    "Press.NaN": (math.nan, ua.VariantType.Double),
    "Press.Inf": (math.inf, ua.VariantType.Float),
    "Press.Array": ([1.0, 2.0, 3.0], ua.VariantType.Double),
    "Press.Struct": (ua.Argument(Name="x", DataType=ua.NodeId(11)), ua.VariantType.ExtensionObject),
    "Press.Huge": (HUGE_TEXT, ua.VariantType.String),
}


@dataclass
class CallSizes:
    """Largest and count of Read / CreateMonitoredItems requests from external clients."""

    reads: list[int] = field(default_factory=list)
    monitored: list[int] = field(default_factory=list)

    async def on_read(self, event: Any, _dispatcher: Any) -> None:
        if event.is_external:
            self.reads.append(len(event.request_params.NodesToRead))

    async def on_monitored(self, event: Any, _dispatcher: Any) -> None:
        if event.is_external:
            self.monitored.append(len(event.request_params.ItemsToCreate))


class PasswordUsers:
    """An asyncua user manager that accepts one user name and password."""

    def __init__(self, username: str, password: str) -> None:
        self.username, self.password = username, password

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if username == self.username and password == self.password:
            return User(role=UserRole.User)
        return None


@dataclass
class Certs:
    """Certificate and key files (PEM) generated for a test, and the application URI inside."""

    certificate: Path
    private_key: Path
    uri: str


def make_certs(directory: Path, name: str, uri: str, usage: list[x509.ObjectIdentifier]) -> Certs:
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key, name, {}, [x509.UniformResourceIdentifier(uri), x509.DNSName(socket.gethostname())], usage, days=30
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}-cert.pem", directory / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return Certs(cert_path, key_path, uri)


def client_certs(directory: Path) -> Certs:
    return make_certs(directory, "edge", "urn:twinedge:test:edge", [ExtendedKeyUsageOID.CLIENT_AUTH])


class TestServer:
    """An asyncua server with the VARIABLES under Objects/Press, started and stopped by the test."""

    __test__ = False  # not a test class

    def __init__(
        self,
        port: int,
        *,
        max_monitored_per_call: int | None = None,
        max_nodes_per_read: int | None = None,
        secure: Certs | None = None,
        users: PasswordUsers | None = None,
    ) -> None:
        self.port = port
        self.url = f"opc.tcp://127.0.0.1:{port}/"
        self.limits = (max_monitored_per_call, max_nodes_per_read)
        self.secure, self.users = secure, users
        self.sizes = CallSizes()
        self.vars: dict[str, Any] = {}
        self.server: Server | None = None

    async def start(self, *, values: dict[str, Any] | None = None) -> TestServer:
        server = Server(user_manager=self.users) if self.users else Server()
        await server.init()
        server.set_endpoint(self.url)
        server.set_server_name("twinedge test server")
        if self.secure is not None:
            await server.load_certificate(str(self.secure.certificate))
            await server.load_private_key(str(self.secure.private_key))
            await server.set_application_uri(self.secure.uri)
            server.set_security_policy([
                ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                ua.SecurityPolicyType.Basic256Sha256_Sign,
            ])
        if self.users is not None:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        idx = await server.register_namespace(NS_URI)
        press = await server.nodes.objects.add_object(idx, "Press")
        for name, (value, vtype) in VARIABLES.items():
            initial = (values or {}).get(name, value)
            var = await press.add_variable(ua.NodeId(name, idx), name.split(".")[-1], ua.Variant(initial, vtype))
            await var.set_writable()
            self.vars[name] = var
        await self._set_limits(server)
        server.subscribe_server_callback(CallbackType.PreRead, self.sizes.on_read)
        server.subscribe_server_callback(CallbackType.ItemSubscriptionCreated, self.sizes.on_monitored)
        await server.start()
        self.server = server
        return self

    async def _set_limits(self, server: Server) -> None:
        ids = (
            ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
            ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
        )
        for node_id, limit in zip(ids, self.limits, strict=True):
            if limit is not None:
                await server.get_node(ua.NodeId(node_id)).write_value(ua.Variant(limit, ua.VariantType.UInt32))

    async def write(self, name: str, value: Any, *, source_ts: datetime.datetime | None = None) -> None:
        vtype = VARIABLES[name][1]
        dv = ua.DataValue(ua.Variant(value, vtype), SourceTimestamp=source_ts or datetime.datetime.now(datetime.UTC))
        await self.vars[name].write_value(dv)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None


async def wait_until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    """Wait until ``predicate()`` holds, for up to ``within`` seconds (TimeoutError otherwise)."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - SourceHealth has no change event to wait on
            await asyncio.sleep(0.02)


def failing_by_sensor(source: OpcUaSource) -> dict[str, str]:
    """The source's failing nodes as sensor name -> reason (status keys them '<device>/<node id>')."""
    return {entry["sensor"]: entry["reason"] for entry in source.health.detail["failing"].values()}


async def wait_for_state(source: OpcUaSource, *states: SourceState, within: float = 10.0) -> None:
    await wait_until(lambda: source.health.state in states, within)


def latest(sink: CollectingSink, sensor: str) -> Any:
    """The most recent value of a sensor across the frames received so far."""
    for frame in reversed(sink.frames):
        if sensor in frame.sensors:
            return frame.sensors[sensor]
    return None


async def wait_for_value(sink: CollectingSink, sensor: str, value: Any, within: float = 10.0) -> None:
    await wait_until(lambda: latest(sink, sensor) == value, within)


class BlackholeProxy:
    """A TCP proxy to a server that can silently swallow all traffic: a cable pulled, no FIN, no RST."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.swallowing = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> BlackholeProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]
        for src, dst, name in ((reader, up_writer, "up"), (up_reader, writer, "down")):
            task = asyncio.create_task(self._pipe(src, dst), name=f"test:proxy:{name}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await src.read(65536):
                if not self.swallowing:
                    dst.write(data)
        dst.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


@contextlib.asynccontextmanager
async def running(config: OpcUaSourceConfig) -> AsyncIterator[tuple[OpcUaSource, CollectingSink]]:
    """An OPC-UA source in a named task, feeding a CollectingSink; cancelled on exit."""
    sink = CollectingSink()
    source = build_source(config, sink)  # through the registry, as the gateway builds it
    assert isinstance(source, OpcUaSource)
    task = asyncio.create_task(source.run(), name=f"test:opcua:{config.name}")
    try:
        yield source, sink
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
