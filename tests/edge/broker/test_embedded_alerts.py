"""Model alerts on the embedded broker: each stored event on twin/<device>/alerts as JSON, readable by any
authenticated user under the default ACL, and not by a device publishing its own."""

from __future__ import annotations

import json
from pathlib import Path

from edge.broker.auth import set_password
from edge.broker.config import BrokerConfig, ListenerConfig
from edge.broker.embedded import EmbeddedBroker
from shared.batch import AlertEvent
from tests.edge.broker.conftest import running
from tests.edge.broker.mqttraw import PUBACK, PUBLISH, RawClient
from tests.support import CollectingSink, free_port

TS = 1_800_000_000.0


def alert(event: str, device: str = "press-1") -> AlertEvent:
    return AlertEvent(alert_id="a" * 32, event=event, device_id=device, ts=TS, model="press-anomaly", version=3,
                      score=4.2, threshold=1.5, message=f"{device}: anomaly score 4.2 at or above 1.5")


async def test_alerts_are_published_per_device_as_json(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    set_password(passwd, "panel", "battery staple")
    set_password(passwd, "press-1", "correct horse")
    port = free_port()
    sink = CollectingSink()
    broker = EmbeddedBroker(BrokerConfig(listeners=[ListenerConfig(name="tcp", port=port)], password_file=passwd),
                            sink, edge_id="edge-1")
    async with running(broker):
        panel, rc, _ = await RawClient.connect(port, "panel", username="panel", password="battery staple")
        assert rc == 0
        assert await panel.subscribe(1, ("twin/+/alerts", 1)) == [1]  # the default ACL lets users read alerts
        await broker.publish_alerts([alert("raised"), alert("cleared", "press-2")])
        got = [await panel.read_kind(PUBLISH) for _ in range(2)]
        assert [p.topic for p in got] == ["twin/press-1/alerts", "twin/press-2/alerts"]
        first = json.loads(got[0].payload)
        assert (first["event"], first["device_id"], first["score"], first["version"]) == ("raised", "press-1", 4.2, 3)
        # a device may publish its telemetry, not alerts of its own making
        device, rc, _ = await RawClient.connect(port, "press-1", username="press-1", password="correct horse")
        await device.publish("twin/press-1/alerts", b'{"event": "raised"}', qos=1, packet_id=1)
        await device.read_kind(PUBACK)  # 3.1.1 cannot refuse a publish: acknowledged and dropped
        await broker.publish_alerts([alert("cleared")])
        following = await panel.read_kind(PUBLISH)
        assert json.loads(following.payload)["event"] == "cleared"  # the device's fake never reached the panel
        await device.disconnect()
        await panel.disconnect()
