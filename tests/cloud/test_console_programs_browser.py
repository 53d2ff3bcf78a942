"""The Programs page in a real browser (Debian's chromium) against a real twincloud fed by real syncs: the Okuma
recording (moved to the last hour), its device model and the programs it ran, and a program with an error. A
viewer searches by text, tool, work offset and errors, opens a program and sees its tools, diagnostics and its
run with the measured duration and the estimate calibrated on the machine."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from shared.codec import encode_obj
from tests.cloud.apiclient import auth, batch
from tests.cloud.browser import WAIT_MS, cloud_tab, needs_chromium, screenshot, sign_in, token_of
from tests.cloud.documents import document, program, program_doc, tool
from tests.cloud.okuma import okuma_frames, okuma_model
from tests.cloud.server import CloudServer
from tests.cloud.test_runs import okuma_programs

pytestmark = needs_chromium
BROKEN = program("mill/O4242.nc", number="O4242", header=["FLANGE OP2"], offsets=["G55"],
                 tools=[tool(3, "10MM DRILL", 10.0, "drill", holes=8), tool(9, "6MM END MILL", 6.0, "end mill")],
                 holes=8, diagnostics=[{"line": 9, "level": "error", "message": "G83 without Q"}])


def _post(cloud: CloudServer, body: dict[str, Any]) -> None:
    resp = httpx.post(cloud.base_url + "/api/v1/sync/batches", content=encode_obj(body), timeout=60,
                      headers={**auth(cloud.edge_tokens["shop-1"]), "Content-Type": "application/msgpack"})
    assert resp.status_code == 200, resp.text


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    with CloudServer(tmp_path_factory.mktemp("programs"), edges=["shop-1"]) as server:
        frames = okuma_frames()
        shift = time.time() - 60 - max(f["ts"] for f in frames)  # the recording's last reading a minute ago
        frames = [{**f, "ts": f["ts"] + shift} for f in frames]
        model, _ = okuma_model()
        docs = [document(1, "mtconnect_device", model["uuid"], model, edge_ts=time.time()),
                *(program_doc(k + 2, p, edge_ts=time.time() - 7200) for k, p in enumerate(okuma_programs())),
                program_doc(9, BROKEN, edge_ts=time.time())]
        _post(server, {**batch("shop-1", [(k + 1, f) for k, f in enumerate(frames)]), "documents": docs})
        yield server


@pytest.fixture
def tab(cloud: CloudServer, browser: Browser) -> Iterator[Page]:
    with cloud_tab(browser, cloud, {"width": 1400, "height": 1000}) as (page, _):
        yield page


def test_search_then_open_a_program_with_its_tools_diagnostics_and_runs(cloud: CloudServer, tab: Page) -> None:
    sign_in(tab, cloud, token_of(cloud, "viewer"), "/programs")
    rows = tab.locator("#programs-table tbody tr[data-sha]")
    expect(rows).to_have_count(5, timeout=WAIT_MS)
    expect(rows.first).to_contain_text("mill/O4242.nc")  # the one reported last first
    expect(rows.first).to_contain_text("1 error")
    tab.get_by_label("Tool").fill("T3")
    tab.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1, timeout=WAIT_MS)
    tab.get_by_label("Tool").fill("")
    tab.get_by_label("Work offset").fill("g55")
    tab.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1, timeout=WAIT_MS)
    expect(tab).to_have_url(f"{cloud.base_url}/programs?offset=g55", timeout=WAIT_MS)
    tab.get_by_label("Work offset").fill("")
    tab.get_by_label("with errors only").check()
    tab.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1, timeout=WAIT_MS)
    tab.get_by_role("link", name="mill/O4242.nc").click()
    detail = tab.locator("#program-detail")
    expect(detail).to_contain_text("(FLANGE OP2)", timeout=WAIT_MS)
    expect(detail.locator("#program-tools tbody tr")).to_have_count(2)
    expect(detail.locator("#program-tools")).to_contain_text("end mill")
    expect(detail.locator("#program-diagnostics")).to_contain_text("G83 without Q")
    expect(detail.locator("#program-runs")).to_contain_text("No run of this program")

    tab.get_by_label("with errors only").uncheck()
    tab.get_by_label("Text").fill("hob")
    tab.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1, timeout=WAIT_MS)
    tab.get_by_role("link", name="okuma/IMTS-2022-2-HOB.MIN").click()
    runs = tab.locator("#program-runs tbody tr")
    expect(runs).to_have_count(1, timeout=WAIT_MS)
    expect(runs.first).to_contain_text("OKUMA")
    expect(runs.first).to_contain_text("3:06.7")  # measured: 186.7 s
    expect(runs.first).to_contain_text("completed")
    expect(runs.first).to_contain_text("2:29.4")  # the raw estimate, 20 % short
    expect(runs.first).to_contain_text("3:06.8")  # calibrated on the machine's four runs
    expect(tab.locator("#program-calibration")).to_contain_text("OKUMA: calibrated on 4 measured runs")
    screenshot(tab, "programs.png")
    sha = okuma_programs()[1]["sha256"]
    tab.goto(f"{cloud.base_url}/programs?sha={sha}")  # a link to the program opens it
    expect(tab.locator("#program-detail")).to_have_attribute("data-sha", sha, timeout=WAIT_MS)


def test_the_device_page_shows_each_mtconnect_field_with_its_units(cloud: CloudServer, tab: Page) -> None:
    sign_in(tab, cloud, token_of(cloud, "viewer"), "/devices?d=OKUMA")
    expect(tab.locator("#device-values tr[data-field=LX1actm] th")).to_have_text("LX1actm (MILLIMETER)",
                                                                                   timeout=WAIT_MS)
    expect(tab.locator("#device-values tr[data-field=LX1load] th")).to_have_text("LX1load (PERCENT)")
    expect(tab.locator("#device-values tr[data-field=Lpexecution] th")).to_have_text("Lpexecution")
