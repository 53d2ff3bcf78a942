"""The Events page in a real browser (Debian's chromium) against a real twincloud, when more events arrive
between two of its rounds than one page holds (an edge back online sends its backlog at once), and when the
filters change while a round is under way: the log shows every event, once, and only those that match."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, Route, expect

from tests.cloud import test_console_live as live
from tests.cloud.apiclient import auth
from tests.cloud.browser import WAIT_MS, intercepting, needs_chromium
from tests.cloud.server import CloudServer
from tests.cloud.test_console_live import event, sign_in, sync

pytestmark = needs_chromium
# The tab of the live pages' tests (every other host blocked, none asked for), on this cloud.
tab = live.tab


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    with CloudServer(tmp_path_factory.mktemp("console-events"), edges=["line-1", "line-2"]) as server:
        server.operator_token = server.add_person("olga", "operator")
        now = time.time()
        sync(server, "line-1", events=[event("line-1", f"before {i}", ts=now - 3600 + i) for i in range(5)])
        yield server


def test_a_burst_larger_than_a_page_reaches_the_log_whole(cloud: CloudServer, tab: Page) -> None:
    sign_in(tab, cloud, "operator", "/events")
    rows = tab.locator("#events-table tr[data-id]")
    expect(rows).to_have_count(5, timeout=WAIT_MS)
    now = time.time()
    sync(cloud, "line-2", events=[event("line-2", f"backlog {i}", ts=now - 600 + i) for i in range(250)])
    expect(rows).to_have_count(255, timeout=WAIT_MS)  # the 250 new ones and the 5 shown before: no gap
    expect(rows.first).to_contain_text("backlog 249")
    expect(rows.last).to_contain_text("before 0")
    expect(tab.get_by_role("button", name="Older events")).to_be_hidden()
    ids = rows.evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert len(set(ids)) == len(ids) == 255


def test_an_answer_to_the_filters_before_a_change_is_not_shown(cloud: CloudServer, tab: Page) -> None:
    """A person switches the level while the page's round is waiting for the service: the late answer, for the
    old level, must not leave its rows in the new view."""
    sync(cloud, "line-1", events=[event("line-1", "modbus read of 22 registers took 31 ms", level="developer")])
    sign_in(tab, cloud, "operator", "/events?level=developer")
    rows = tab.locator("#events-table tr[data-id]")
    expect(tab.locator("#events-table")).to_contain_text("modbus read of 22 registers", timeout=WAIT_MS)
    held: list[Route] = []

    def developer(url: str) -> bool:
        return "/api/v1/events" in url and "level=developer" in url

    with intercepting(tab, developer, lambda route: held.append(route)):
        with tab.expect_request(lambda r: developer(r.url), timeout=WAIT_MS):
            pass  # the next round asks, and its answer is held
        tab.get_by_label("Level").select_option("operator")
    assert held
    for route in held:
        route.continue_()
    expect(rows.first).to_be_visible(timeout=WAIT_MS)
    expect(tab.locator("#events-status")).to_contain_text("live", timeout=WAIT_MS)
    expect(tab.locator("#events-table")).not_to_contain_text("modbus read of 22 registers", timeout=WAIT_MS)
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.level)") == ["operator"] * rows.count()


def test_alarms_and_gaps_show_their_severity_code_and_lost_count(cloud: CloudServer, tab: Page) -> None:
    now = time.time()
    alarm = {"item": "Lsystem", "type": "SYSTEM", "native_code": "2041", "native_severity": "3",
             "severity": "FAULT", "qualifier": None, "sequence": 812}
    gap = {"lost": 1337, "from_sequence": 20_001, "to_sequence": 21_337, "instance_id": 1659966694,
           "reason": "out_of_range"}
    sync(cloud, "line-2", events=[
        {**event("line-2", "Alarm 2041 on OKUMA (SYSTEM, FAULT): SPINDLE OVERLOAD", ts=now - 3, device="okuma-1"),
         "kind": "alarm_opened", "source": "okuma", "details": alarm},
        {**event("line-2", "Alarm 2041 on OKUMA cleared", ts=now - 2, device="okuma-1"), "kind": "alarm_closed",
         "source": "okuma", "details": {**alarm, "severity": "NORMAL"}},
        {**event("line-2", "1,337 samples of okuma were lost: the edge fell behind", ts=now - 1, device="okuma-1"),
         "kind": "data_gap", "source": "okuma", "details": gap}])
    listed = httpx.get(f"{cloud.base_url}/api/v1/events", params={"device": "okuma-1", "level": "operator"},
                       headers=auth(cloud.viewer_token), timeout=10).json()["events"]
    assert [(e["kind"], e["details"].get("native_code"), e["details"].get("lost")) for e in listed] == [
        ("data_gap", None, 1337), ("alarm_closed", "2041", None), ("alarm_opened", "2041", None)]
    sign_in(tab, cloud, "operator", "/events?device=okuma-1")
    rows = tab.locator("#events-table tr[data-id]")
    expect(rows).to_have_count(3, timeout=WAIT_MS)
    expect(rows.nth(0).locator(".facts")).to_contain_text("1,337 samples lost")
    expect(rows.nth(0).locator(".facts")).to_contain_text("sequences 20001–21337 · the edge fell behind")
    expect(rows.nth(1).locator(".facts")).to_contain_text("cleared")
    opened = rows.nth(2).locator(".facts")
    expect(opened).to_contain_text("FAULT")
    expect(opened).to_contain_text("code 2041 · SYSTEM · native severity 3 · item Lsystem")
    assert opened.locator(".badge.bad").count() == 1
