"""The console watching a real plant: the simulator's machines, the edge daemon polling them, the cloud, chromium.

The simulator takes machine-2 off the network 25 s after it starts. An operator has the Events page open in
one tab and the Devices page in another: within 5 s of the stop the log panel shows the edge's operator-level
sentence about machine-2, and the machine's state on the Devices page turns from "ok" to "disconnected", both
without a reload. machine-1's page, opened without a choice of fields, charts two fields whose readings move.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from playwright.async_api import async_playwright, expect

from tests.cloud.browser import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.plant import Plant

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Debian's chromium is not installed ({CHROMIUM} is missing)"),
]
STOP_AT = 25.0  # seconds after the simulator starts: the pages are up after about 10 s, twice that on a loaded machine
WITHIN_S = 5.0


async def test_a_stopped_machine_shows_in_the_log_panel_and_on_the_devices_page(tmp_path: Path) -> None:
    async with Plant(tmp_path, machines=2, faults=(f"machine-2:plc_restart@{STOP_AT:g}s+120s",)) as plant:
        cloud = plant.cloud
        made = await asyncio.to_thread(httpx.post, cloud.base_url + "/api/v1/users",
                                       json={"name": "olga", "role": "operator"},
                                       headers={"Authorization": f"Bearer {cloud.admin_token}"}, timeout=10)
        assert made.status_code == 201
        await plant.start()
        stop_at = plant.started_at + STOP_AT
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            context = await browser.new_context(viewport={"width": 1280, "height": 800})
            events = await context.new_page()
            await events.goto(cloud.base_url + "/events")
            await events.get_by_label("Your token").fill(made.json()["token"])
            await events.get_by_role("button", name="Sign in").click()
            await expect(events).to_have_url(cloud.base_url + "/events")
            await expect(events.get_by_label("Level")).to_have_value("operator")
            devices = await context.new_page()
            await devices.goto(cloud.base_url + "/devices")
            machine_2 = devices.locator("tr[data-device=machine-2] td.state")
            await expect(machine_2).to_have_text("ok", timeout=30_000)
            assert time.time() < stop_at, "the plant took too long to start: the stop came before the pages were up"
            await expect(events.locator("#events-table")).not_to_contain_text("machine-2 stopped answering")

            await asyncio.sleep(max(0.0, stop_at - time.time()))
            deadline_ms = (stop_at + WITHIN_S - time.time()) * 1000
            lost = events.locator("#events-table tr[data-level=operator]", has_text="machine-2 stopped answering on")
            await expect(lost).to_have_count(1, timeout=deadline_ms)
            await expect(machine_2).to_have_text("disconnected", timeout=max(1.0, (stop_at + WITHIN_S - time.time())
                                                                               * 1000))
            await expect(lost).to_contain_text(f"127.0.0.1:{plant.modbus + 1}")
            await expect(devices.locator("tr[data-device=machine-1] td.state")).to_have_text("ok")

            # machine-1's page, opened without a choice of fields, charts two whose readings move.
            await devices.goto(cloud.base_url + "/devices?d=machine-1")
            await devices.wait_for_function("() => window.twinCharts && Object.keys(window.twinCharts.charts).length"
                                            " === 2 && Object.values(window.twinCharts.charts).every(c => c.data[0]"
                                            ".length > 3)", timeout=20_000)
            spread = await devices.evaluate("""() => Object.fromEntries(Object.entries(window.twinCharts.charts)
                .map(([field, chart]) => { const v = chart.data[1].filter(x => x !== null && x !== undefined);
                    return [field, Math.max(...v) - Math.min(...v)]; }))""")
            assert len(spread) == 2 and all(s > 0 for s in spread.values()), spread
            await browser.close()
