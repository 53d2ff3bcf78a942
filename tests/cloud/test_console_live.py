"""The Devices, Alerts and Events pages in a real browser (Debian's chromium, Playwright) against a real twincloud.

The cloud holds 30 days of one oven's temperature (a point every 10 s, stored through the storage API before
the service starts) with one spike in it, and is fed by real syncs while the pages are open: frames reach a
live chart without a reload, an alert reaches the inbox and an operator acknowledges it, an event reaches the
log panel. Zoomed out to 30 days, the spike is still in the chart's data and on its pixels. Every tab blocks
every request that is not for the cloud's own host, and none is made.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from cloud.config import load_cloud_config
from cloud.sessions import SESSION_COOKIE
from cloud.storage import open_storage
from shared.codec import encode_obj
from shared.frame import TelemetryFrame
from tests.cloud.apiclient import auth, batch
from tests.cloud.browser import WAIT_MS, cloud_tab, needs_chromium, screenshot, token_of
from tests.cloud.browser import sign_in as sign_in_with_token
from tests.cloud.server import CloudServer

pytestmark = needs_chromium
DAYS = 30
STEP = 10  # seconds between the seeded points
SPIKE = 500.0  # one reading among ~260,000 that otherwise stay within 19..21
_seqs = itertools.count(int(time.time() * 1000))


def baseline(i: int) -> float:
    return 20.0 + ((i * 7919) % 200 - 100) / 100


def seed(server: CloudServer, now: float) -> float:
    """30 days of oven-1's temperature up to a minute ago, one spike in the middle; returns the spike's time."""
    spike_at = now - DAYS * 86400 / 2

    async def load() -> None:
        storage = open_storage(load_cloud_config(server.config_path).database)
        await storage.open()
        try:
            start = now - DAYS * 86400
            total = int((DAYS * 86400 - 60) / STEP)
            spike_i = int((spike_at - start) / STEP)
            for first in range(0, total, 5000):
                frames = [(next(_seqs), TelemetryFrame(ts=start + i * STEP, device_id="oven-1",
                                                       sensors={"temp": SPIKE if i == spike_i else baseline(i)}))
                          for i in range(first, min(first + 5000, total))]
                await storage.ingest("line-1", frames, None, int(now * 1e6))
        finally:
            await storage.close()
    asyncio.run(load())
    return now - DAYS * 86400 + int((spike_at - (now - DAYS * 86400)) / STEP) * STEP


def sync(cloud: CloudServer, edge: str, frames: list[dict[str, Any]] | None = None, *,
         alerts: list[dict[str, Any]] | None = None, events: list[dict[str, Any]] | None = None,
         sources: dict[str, str] | None = None) -> None:
    body = batch(edge, [(next(_seqs), f) for f in frames or []], queue_depth=3)
    body["alerts"] = [{"seq": next(_seqs), "alert": a} for a in alerts or []]
    body["events"] = [{"seq": next(_seqs), "event": e} for e in events or []]
    if sources is not None:
        body["health"]["sources"] = sources
    resp = httpx.post(cloud.base_url + "/api/v1/sync/batches", content=encode_obj(body), timeout=10,
                      headers={**auth(cloud.edge_tokens[edge]), "Content-Type": "application/msgpack"})
    assert resp.status_code == 200, resp.text


def frame(device: str, ts: float, **sensors: Any) -> dict[str, Any]:
    return TelemetryFrame(ts=ts, device_id=device, sensors=sensors, status="ok").to_wire()


def alert(alert_id: str, device: str, message: str) -> dict[str, Any]:
    return {"alert_id": alert_id, "event": "raised", "device_id": device, "ts": time.time(), "model": "bearing",
            "version": 1, "score": 0.9, "threshold": 0.5, "message": message}


def event(edge: str, message: str, level: str = "operator", ts: float | None = None,
          device: str | None = "press-1") -> dict[str, Any]:
    return {"ts": ts or time.time(), "level": level, "kind": "source_lost", "edge": edge, "device": device,
            "source": device, "message": message, "details": {"endpoint": "10.0.0.12:502"}}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    server = CloudServer(tmp_path_factory.mktemp("console-live"), edges=["line-1", "line-2"])
    server.spike_at = seed(server, time.time())  # type: ignore[attr-defined]
    with server:
        server.operator_token = server.add_person("olga", "operator")
        now = time.time()
        sync(server, "line-1", [frame("press-1", now - 5, temp=41.5, rpm=1200),
                                frame("press-2", now - 5, temp=38.0, rpm=900)],
             alerts=[alert("a-1", "press-2", "bearing vibration unusual")],
             events=[event("line-1", f"old event {i}", ts=now - 86400 + i) for i in range(120)],
             sources={"press-1": "connected", "press-2": "connected"})
        sync(server, "line-2", [frame("mixer-1", now - 5, temp=22.0)])
        yield server


@pytest.fixture
def tab(cloud: CloudServer, browser: Browser) -> Iterator[Page]:
    """A tab in a fresh profile in which every request for another host than the cloud's is blocked; at the
    end, none may have been made."""
    with cloud_tab(browser, cloud, {"width": 1280, "height": 900}) as (page, _):
        yield page


def sign_in(page: Page, cloud: CloudServer, role: str, path: str) -> None:
    """Signed in as ``role``, on ``path``."""
    sign_in_with_token(page, cloud, token_of(cloud, role), path)
    expect(page).to_have_url(cloud.base_url + path)


def test_the_devices_list_shows_each_device_with_its_state(cloud: CloudServer, tab: Page) -> None:
    sign_in(tab, cloud, "viewer", "/devices")
    expect(tab.locator("#devices-table tbody tr")).to_have_count(4, timeout=WAIT_MS)
    expect(tab.locator("tr[data-device=press-1] td.state")).to_have_text("ok")
    expect(tab.locator("tr[data-device=press-2] td.state")).to_have_text("alerting")
    expect(tab.locator("tr[data-device=oven-1]")).to_contain_text("line-1")
    sync(cloud, "line-1", sources={"press-1": "disconnected", "press-2": "connected"})
    expect(tab.locator("tr[data-device=press-1] td.state")).to_have_text("disconnected", timeout=WAIT_MS)
    sync(cloud, "line-1", sources={"press-1": "connected", "press-2": "connected"})
    expect(tab.locator("tr[data-device=press-1] td.state")).to_have_text("ok", timeout=WAIT_MS)
    tab.get_by_role("link", name="press-1").click()
    expect(tab).to_have_url(cloud.base_url + "/devices?d=press-1")
    expect(tab.locator("#device-values tr[data-field=rpm] .value")).to_have_text("1200", timeout=WAIT_MS)


def chart_points(page: Page, field: str) -> int:
    return int(page.evaluate("f => window.twinCharts.charts[f].data[0].length", field))


def test_a_live_chart_gains_points_without_a_reload(cloud: CloudServer, tab: Page) -> None:
    sign_in(tab, cloud, "viewer", "/devices?d=press-1&range=15m&fields=temp,rpm")
    expect(tab.locator("#device-feed")).to_have_text("live", timeout=WAIT_MS)
    expect(tab.locator("figure.chart")).to_have_count(2)
    expect(tab.locator("#device-values input[data-field=temp]")).to_be_checked()
    before = chart_points(tab, "temp")
    url = tab.url
    now = time.time()
    sync(cloud, "line-1", [frame("press-1", now - 3 + i, temp=42.0 + i, rpm=1210 + i) for i in range(3)])
    # A function, not an expression: Playwright polls an expression through eval, which the page's CSP refuses.
    tab.wait_for_function("(n) => window.twinCharts.charts.temp.data[0].length >= n", arg=before + 3,
                          timeout=WAIT_MS)
    expect(tab.locator("#device-values tr[data-field=temp] .value")).to_have_text("44")
    assert tab.url == url  # no reload, no navigation
    assert tab.evaluate("Math.max(...window.twinCharts.charts.rpm.data[3])") == 1212


def test_zoomed_out_to_30_days_a_single_spike_stays_visible(cloud: CloudServer, tab: Page) -> None:
    spike_at: float = cloud.spike_at  # type: ignore[attr-defined]
    sign_in(tab, cloud, "viewer", "/devices?d=oven-1&range=24h&fields=temp")
    expect(tab.locator("#device-charts")).to_have_attribute("data-loaded", "1", timeout=WAIT_MS)
    tab.get_by_label("Range").select_option("30d")
    expect(tab.locator("#device-charts")).to_have_attribute("data-loaded", "2", timeout=WAIT_MS)
    held = tab.evaluate("""() => { const u = window.twinCharts.charts.temp;
        return {x: u.data[0], max: u.data[3], mean: u.data[1], width: u.bbox.width / devicePixelRatio}; }""")
    buckets = len(held["x"])
    assert 500 <= buckets <= held["width"] + 1  # one bucket per one or two pixel columns
    peak = held["max"].index(SPIKE)
    assert held["x"][peak] <= spike_at < held["x"][peak + 1]
    assert max(held["mean"]) < 25  # the mean alone would have hidden it: the envelope keeps it
    assert sorted(held["max"])[-2] < 25  # exactly one bucket holds it
    # ... and it is drawn: the pixels at the spike's top are the envelope's colour, not the background.
    top = tab.evaluate("""t => { const u = window.twinCharts.charts.temp; const r = u.over.getBoundingClientRect();
        return {x: r.left + u.valToPos(t, 'x'), y: r.top + u.valToPos(500, 'y')}; }""", held["x"][peak])
    shot = Image.open(io.BytesIO(tab.screenshot())).convert("RGB")
    around = [shot.getpixel((round(top["x"]) + dx, round(top["y"]) + dy)) for dx in range(-3, 4) for dy in range(0, 6)]
    assert any(r < 160 and b > 120 and r + g + b < 600 for r, g, b in around), around
    screenshot(tab, "console-device.png")
    # Dragging across the spike zooms in: finer buckets from the aggregate endpoint, the spike still there.
    box = tab.locator("figure.chart .u-over").bounding_box()
    assert box is not None
    tab.mouse.move(top["x"] - 40, box["y"] + 20)
    tab.mouse.down()
    tab.mouse.move(top["x"] + 40, box["y"] + 20, steps=5)
    tab.mouse.up()
    expect(tab.locator("#device-charts")).to_have_attribute("data-loaded", "3", timeout=WAIT_MS)
    expect(tab.get_by_role("button", name="Back to live")).to_be_visible()
    zoomed = tab.evaluate("window.twinCharts.loads.at(-1)")
    assert zoomed["window_s"] < 3600 and zoomed["span_s"] < 5 * 86400
    assert tab.evaluate("Math.max(...window.twinCharts.charts.temp.data[3])") == SPIKE


def test_an_alert_reaches_the_inbox_live_and_an_operator_acknowledges_it(cloud: CloudServer, tab: Page) -> None:
    sign_in(tab, cloud, "operator", "/alerts")
    expect(tab.locator("#alerts-table tr[data-id]")).not_to_have_count(0, timeout=WAIT_MS)
    sync(cloud, "line-2", [frame("mixer-1", time.time(), temp=80.0)],
         alerts=[alert("m-1", "mixer-1", "mixer motor overheating")])
    row = tab.locator("#alerts-table tr[data-device=mixer-1]")
    expect(row).to_contain_text("mixer motor overheating", timeout=WAIT_MS)
    expect(row).to_contain_text("open")
    row.get_by_role("button", name="Acknowledge").click()
    row.get_by_role("textbox").fill("motor fan replaced")
    screenshot(tab, "console-alerts.png")
    row.get_by_role("button", name="Acknowledge").click()
    expect(row.locator("td.ack")).to_contain_text("olga", timeout=WAIT_MS)
    expect(row.locator("td.ack")).to_contain_text("motor fan replaced")
    found = httpx.get(cloud.base_url + "/api/v1/alerts", params={"device": "mixer-1"},
                      headers=auth(cloud.viewer_token), timeout=10).json()["alerts"]
    assert [(a["acked_by"], a["ack_comment"]) for a in found] == [("olga", "motor fan replaced")]


def test_a_viewer_has_no_acknowledge_button_and_the_server_refuses_a_viewers_ack(cloud: CloudServer,
                                                                                 tab: Page) -> None:
    sign_in(tab, cloud, "viewer", "/alerts")
    row = tab.locator("#alerts-table tr[data-device=press-2]")
    expect(row).to_contain_text("bearing vibration unusual", timeout=WAIT_MS)
    expect(tab.get_by_role("button", name="Acknowledge")).to_have_count(0)
    alert_id = row.get_attribute("data-id")
    # Past the page: the viewer's own session, with its CSRF token, asks for the acknowledgement itself.
    answer = tab.evaluate("""async id => {
        const session = await (await fetch('/api/v1/session')).json();
        const r = await fetch(`/api/v1/alerts/${id}/ack`, {method: 'POST', body: JSON.stringify({comment: 'x'}),
            headers: {'Content-Type': 'application/json', 'X-CSRF-Token': session.csrf}});
        return {status: r.status, body: await r.json()}; }""", alert_id)
    assert answer["status"] == 403, answer
    found = httpx.get(cloud.base_url + "/api/v1/alerts", params={"device": "press-2"},
                      headers=auth(cloud.viewer_token), timeout=10).json()["alerts"]
    assert [a["acknowledged"] for a in found] == [False]


def test_an_event_reaches_the_log_panel_live_filtered_by_level(cloud: CloudServer, tab: Page) -> None:
    sign_in(tab, cloud, "operator", "/events")
    expect(tab.get_by_label("Level")).to_have_value("operator")
    rows = tab.locator("#events-table tr[data-id]")
    expect(rows).to_have_count(100, timeout=WAIT_MS)  # one page of the 120 old ones
    tab.get_by_role("button", name="Older events").click()
    expect(rows).to_have_count(120, timeout=WAIT_MS)
    expect(tab.get_by_role("button", name="Older events")).to_be_hidden()
    sync(cloud, "line-1", events=[
        event("line-1", "press-1 stopped answering on 10.0.0.12:502; retrying in 5 s"),
        event("line-1", "modbus read of 22 registers took 31 ms", level="developer")])
    expect(rows.first).to_contain_text("press-1 stopped answering on 10.0.0.12:502", timeout=WAIT_MS)
    expect(tab.locator("#events-table")).not_to_contain_text("modbus read of 22 registers")
    tab.evaluate("window.scrollTo(0, 0)")
    screenshot(tab, "console-events.png")
    tab.get_by_label("Level").select_option("developer")
    expect(rows.first).to_contain_text("modbus read of 22 registers took 31 ms", timeout=WAIT_MS)
    assert "level=developer" in tab.url
    tab.get_by_label("Edge").select_option("line-2")
    expect(tab.locator("td.empty")).to_have_text("No event matches these filters.", timeout=WAIT_MS)


def test_a_session_ended_mid_page_signs_in_again_onto_the_same_filters(cloud: CloudServer, tab: Page) -> None:
    path = "/events?level=developer&edge=line-1"
    sign_in(tab, cloud, "operator", path)
    expect(tab.get_by_label("Level")).to_have_value("developer")
    cookie = {SESSION_COOKIE: next(c["value"] for c in tab.context.cookies() if c["name"] == SESSION_COOKIE)}
    csrf = httpx.get(cloud.base_url + "/api/v1/session", cookies=cookie, timeout=10).json()["csrf"]
    # The session ends on the server (as when it expires) while the page is open and polling.
    ended = httpx.post(cloud.base_url + "/logout", cookies=cookie, headers={"X-CSRF-Token": csrf}, timeout=10)
    assert ended.status_code == 204, ended.text
    expect(tab).to_have_url(f"{cloud.base_url}/login?next={quote(path, safe='')}", timeout=WAIT_MS)
    tab.get_by_label("Your token").fill(cloud.operator_token)  # type: ignore[attr-defined]
    tab.get_by_role("button", name="Sign in").click()
    expect(tab).to_have_url(cloud.base_url + path)
    expect(tab.get_by_label("Level")).to_have_value("developer")
    expect(tab.get_by_label("Edge")).to_have_value("line-1", timeout=WAIT_MS)


def test_a_bad_time_in_the_address_is_said_plainly(cloud: CloudServer, tab: Page) -> None:
    sign_in(tab, cloud, "admin", "/events?from=yesterday-ish")
    expect(tab.locator("#events-status")).to_contain_text("“from” must be a time", timeout=WAIT_MS)
    expect(tab.get_by_label("Level")).to_have_value("technical")  # an admin's default
    tab.goto(cloud.base_url + "/alerts?to=soon")
    expect(tab.locator("#alerts-status")).to_contain_text("“to” must be a time", timeout=WAIT_MS)
    tab.goto(cloud.base_url + "/devices?d=no-such-press")
    expect(tab.locator("#device-status")).to_have_text("No device “no-such-press” has sent data.",
                                                       timeout=WAIT_MS)


def test_the_pages_work_with_every_other_host_blocked(cloud: CloudServer, tab: Page) -> None:
    """The tab blocks every request for another host (the fixture); each page loads and shows its data."""
    sign_in(tab, cloud, "viewer", "/devices")
    expect(tab.locator("tr[data-device=oven-1]")).to_be_visible(timeout=WAIT_MS)
    for path, shown in (("/devices?d=press-1", "#device-charts figure.chart"), ("/alerts", "#alerts-table tr[data-id]"),
                        ("/events", "#events-table tr[data-id]")):
        tab.goto(cloud.base_url + path)
        expect(tab.locator(shown).first).to_be_visible(timeout=WAIT_MS)
