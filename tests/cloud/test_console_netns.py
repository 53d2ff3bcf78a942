"""The console in a network namespace that has nothing but loopback: the machine cut off from every network.

The test runs itself again under `unshare --net` (a new network namespace; only `lo`, brought up): a real
twincloud fed by a real sync, and chromium, with no request blocked by the browser. Every page loads and shows its
data, and the API docs page its operations; no request is made for another host, and none fails. Skipped where this
process may not make a network namespace (it needs root or unprivileged user namespaces).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.cloud.browser import CHROMIUM, CHROMIUM_ARGS

REPO = Path(__file__).resolve().parents[2]
WAIT_MS = 20_000
# Each page and what shows that it works: its data drawn, not only its frame.
PAGES = [
    ("/", "tr.edge"), ("/kiosk", ".tile[data-device=press-2]"), ("/devices", "tr[data-device=press-1]"),
    ("/devices?d=press-1", "#device-charts figure.chart"), ("/alerts", "#alerts-table tr[data-id]"),
    ("/events", "#events-table"), ("/assemblies", "main h1"), ("/models", "main h1"), ("/admin", "main h1"),
]


def _unshare() -> list[str] | None:
    """The command that runs a program in a network namespace of its own, or None where none may be made."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return None
    for command in (["unshare", "--net"], ["unshare", "--map-root-user", "--net"]):
        try:
            if subprocess.run([*command, "true"], capture_output=True, timeout=10).returncode == 0:
                return command
        except (OSError, subprocess.TimeoutExpired):
            continue
    return None


UNSHARE = _unshare()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Debian's chromium is not installed ({CHROMIUM} is missing)"),
    pytest.mark.skipif(UNSHARE is None, reason="this process may not make a network namespace (unshare --net)"),
]


def inside() -> dict[str, list[str]]:
    """In the namespace: the cloud, a sync, each page in chromium; what was asked for and what failed."""
    from playwright.sync_api import expect, sync_playwright

    from tests.cloud.server import CloudServer
    from tests.cloud.test_console_browser import sync

    other, failed, missing = [], [], []
    with tempfile.TemporaryDirectory() as tmp, CloudServer(Path(tmp), edges=["line-1"]) as cloud:
        alert = {"seq": 1, "alert": {"alert_id": "a-1", "event": "raised", "device_id": "press-2",
                                     "ts": time.time(), "model": "bearing", "version": 1, "score": 0.9,
                                     "threshold": 0.5, "message": "bearing vibration unusual"}}
        sync(cloud, "line-1", ["press-1", "press-2"], [alert])
        host = urlsplit(cloud.base_url).netloc
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("request", lambda r: other.append(r.url) if urlsplit(r.url).netloc != host else None)
            # A request cut short by going to the next page is not a failure; one that found no network is.
            page.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}")
                    if r.failure != "net::ERR_ABORTED" else None)
            page.goto(cloud.base_url + "/")
            page.get_by_label("Your token").fill(cloud.admin_token)
            page.get_by_role("button", name="Sign in").click()
            expect(page).to_have_url(cloud.base_url + "/")
            for path, shown in PAGES:
                page.goto(cloud.base_url + path)
                try:
                    expect(page.locator(shown).first).to_be_visible(timeout=WAIT_MS)
                except AssertionError as exc:
                    missing.append(f"{path}: {shown} not shown ({str(exc).splitlines()[0]})")
            page.goto(cloud.base_url + "/docs")  # Swagger UI, its bundle and the API map
            page.get_by_label("The API map needs a token").fill(cloud.viewer_token)
            page.get_by_role("button", name="Show the API").click()
            try:
                expect(page.locator(".opblock").first).to_be_visible(timeout=WAIT_MS)
            except AssertionError:
                missing.append("/docs: no operation shown")
            browser.close()
    return {"other_hosts": other, "failed": failed, "not_shown": missing}


def test_every_page_works_with_nothing_but_loopback() -> None:
    assert UNSHARE is not None
    program = ("import json; from tests.cloud.test_console_netns import inside; "
               "print('RESULT ' + json.dumps(inside()))")
    run = subprocess.run(
        [*UNSHARE, "sh", "-c", 'ip link set lo up && test -z "$(ip -o link show | grep -v " lo:")" && exec "$@"',
         "netns", sys.executable, "-c", program],
        capture_output=True, text=True, timeout=240, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "http_proxy": "", "https_proxy": "", "HTTP_PROXY": "",
             "HTTPS_PROXY": ""})
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, f"exit {run.returncode}\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result == {"other_hosts": [], "failed": [], "not_shown": []}
