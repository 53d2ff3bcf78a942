"""A fault in the plant raises a model alert that an operator sees arrive in the inbox and acknowledges.

The real simulator (one Modbus machine), the real edge daemon polling it and syncing to a real twincloud, and
chromium. A small anomaly model (tests/mlkit.py: the squared distance of the coolant flow from its normal 12
l/min, threshold 25) is uploaded and assigned to the edge, which pulls it and scores every frame. An operator
has the Alerts page open: nothing is raised while the machine runs normally. When the simulator's coolant
pump fails (`overheat`, the flow drops to 2 l/min) the edge raises an alert, the page shows it without a reload,
and the operator acknowledges it with a comment, which the API then reports. Every request for another host is
blocked in the browser, and none is made.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Route, async_playwright, expect

from edge.control.client import request
from tests.cloud.browser import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.daemon import EdgeDaemon
from tests.e2e.plant import Plant
from tests.e2e.test_cloud_sync import wait_for
from tests.mlkit import make_package, make_schema

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Debian's chromium is not installed ({CHROMIUM} is missing)"),
]
FAULT_AT = 20.0  # seconds after the simulator starts: the page is open and the model serving by then
MODEL = "coolant-watch"
INFERENCE = ('[inference]\npoll_interval = "1s"\n'
             '[inference.alerts]\nmin_duration = "1s"\nclear_duration = "2s"\n')


async def serving(daemon: EdgeDaemon) -> bool:
    status: dict[str, Any] = await request(daemon.socket, "model_status")
    device = next((d for d in status["devices"] if d["device_id"] == "machine-1"), {})
    return device.get("state") == "serving" and (device.get("rows_scored") or 0) > 0


async def test_a_simulated_fault_raises_an_alert_in_the_open_inbox_and_an_operator_acknowledges_it(
        tmp_path: Path) -> None:
    async with Plant(tmp_path, faults=(f"machine-1:overheat@{FAULT_AT:g}s",), edge_toml=INFERENCE) as plant:
        cloud = plant.cloud
        admin = {"Authorization": f"Bearer {cloud.admin_token}"}
        async with httpx.AsyncClient(base_url=cloud.base_url, headers=admin, timeout=10) as api:
            made = await api.post("/api/v1/users", json={"name": "olga", "role": "operator"})
            assert made.status_code == 201, made.text
            # Normal flow 12 l/min scores about 0; the failed pump's 2 l/min scores 100.
            data, _ = make_package(make_schema([("coolant_flow", "l/min")], mean=12.0, scale=1.0, threshold=25.0),
                                   name=MODEL)
            uploaded = await api.post("/api/v1/models", content=data, headers={"Content-Type": "application/zip"})
            assert uploaded.status_code in (200, 201), uploaded.text
            assigned = await api.put("/api/v1/model-assignments", json={
                "scope": "edge", "target": plant.edge_id, "model": MODEL, "version": uploaded.json()["version"]})
            assert assigned.status_code == 200, assigned.text
        host = urlsplit(cloud.base_url).netloc
        elsewhere: list[str] = []

        async def only_this_host(route: Route) -> None:
            if urlsplit(route.request.url).netloc == host:
                await route.continue_()
            else:
                elsewhere.append(route.request.url)
                await route.abort("blockedbyclient")

        daemon = await plant.start()
        fault_at = plant.started_at + FAULT_AT
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            context = await browser.new_context(viewport={"width": 1280, "height": 800})
            await context.route("**/*", only_this_host)
            page = await context.new_page()
            await page.goto(cloud.base_url + "/alerts")
            await page.get_by_label("Your token").fill(made.json()["token"])
            await page.get_by_role("button", name="Sign in").click()
            await expect(page).to_have_url(cloud.base_url + "/alerts")
            await wait_for(lambda: serving(daemon), timeout=30)
            assert time.time() < fault_at, "the plant took too long to start: the fault came before the model served"
            await expect(page.locator("td.empty")).to_have_text("No alert matches these filters.")

            row = page.locator("#alerts-table tr[data-device=machine-1]")
            await expect(row).to_have_count(1, timeout=(fault_at - time.time() + 30) * 1000)
            assert time.time() >= fault_at, "an alert was raised before the fault"
            await expect(row).to_contain_text(f"{MODEL} v1")
            await expect(row.locator("td").nth(2)).to_contain_text("open")
            await row.get_by_role("button", name="Acknowledge").click()
            await row.get_by_role("textbox").fill("coolant pump restarted")
            await row.get_by_role("button", name="Acknowledge").click()
            await expect(row.locator("td.ack")).to_contain_text("olga", timeout=20_000)
            await expect(row.locator("td.ack")).to_contain_text("coolant pump restarted")
            await browser.close()
        async with httpx.AsyncClient(base_url=cloud.base_url, headers=admin, timeout=10) as api:
            found = (await api.get("/api/v1/alerts", params={"device": "machine-1"})).json()["alerts"]
        assert [(a["model"], a["edge"], a["acked_by"], a["ack_comment"]) for a in found] == [
            (MODEL, plant.edge_id, "olga", "coolant pump restarted")]
        assert found[0]["score"] > 25.0
        assert elsewhere == []
