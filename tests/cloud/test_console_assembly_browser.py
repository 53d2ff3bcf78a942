"""The Assemblies page in a real browser: Debian's chromium (Playwright) against a real twincloud process.

An assembly of two 100 mm boxes, the second 90 mm along x so that they share
a 10 mm slab, is uploaded through the API. Its 3D view draws the colliding
faces in the highlight red (checked on a screenshot's pixels); hovering a
part names it; moving the second box clear in the page re-checks the poses
through the API and the red is gone. Every request goes to the cloud's host.
The 3D view needs WebGL: chromium is launched with ``WEBGL_ARGS`` (see tests/cloud/browser.py).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import trimesh
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from tests.cloud.apiclient import auth
from tests.cloud.browser import WAIT_MS, WEBGL_ARGS, chromium, cloud_tab, needs_chromium, screenshot, sign_in
from tests.cloud.server import CloudServer

pytestmark = needs_chromium


def _box() -> dict:
    data = trimesh.creation.box((100.0, 100.0, 100.0)).export(file_type="stl")
    return {"format": "stl", "data_base64": base64.b64encode(data).decode()}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    with CloudServer(tmp_path_factory.mktemp("assemblies"), edges=["line-1"]) as server:
        operator = server.add_person("olga", "operator")
        body = {"name": "press frame", "unit": "mm", "parts": [
            {"name": "frame", "mesh": _box(), "material": "steel-s235"},
            {"name": "ram", "mesh": _box(), "material": "aluminium-6061-t6",
             "pose": {"translation": [90, 0, 0]}}]}
        up = httpx.post(server.base_url + "/api/v1/physics/assemblies", json=body, timeout=30,
                        headers=auth(operator))
        assert up.status_code == 201, up.text
        server.assembly_id = up.json()["id"]  # type: ignore[attr-defined]
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium(WEBGL_ARGS) as launched:
        yield launched


@pytest.fixture
def asked(cloud: CloudServer, browser: Browser) -> Iterator[tuple[Page, list[str]]]:
    """A tab whose every request to another host is blocked (and recorded: there must be none)."""
    with cloud_tab(browser, cloud, {"width": 1400, "height": 900}) as tab:
        yield tab


def _pixels(page: Page) -> tuple[Image.Image, dict]:
    box = page.locator("#assembly-view canvas").bounding_box()
    assert box is not None
    shot = Image.open(io.BytesIO(page.screenshot(clip=box))).convert("RGB")
    return shot, box


def _count_red(image: Image.Image) -> int:
    """Pixels of the interfering red (#d62728) however the light shades it; never the grey, amber or blue."""
    rgb = np.asarray(image, dtype=float)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return int(((r > 90) & (r > 2.5 * g) & (r > 2.5 * b)).sum())


def _open(page: Page, cloud: CloudServer) -> None:
    sign_in(page, cloud, cloud.viewer_token, "/assemblies")
    row = page.locator(f"tr[data-assembly='{cloud.assembly_id}']")  # type: ignore[attr-defined]
    expect(row).to_contain_text("press frame", timeout=WAIT_MS)
    expect(row).to_contain_text("2")
    row.get_by_role("link").click()
    expect(page.locator("#assembly-view")).to_have_attribute("data-state", "ready", timeout=WAIT_MS)


def test_the_colliding_faces_are_drawn_red_and_hovering_names_a_part(cloud: CloudServer, asked) -> None:
    page, _ = asked
    _open(page, cloud)
    expect(page.locator("#assembly-status")).to_contain_text("2 parts; 1 interfering, 0 touching")
    expect(page.locator("#pairs-table")).to_contain_text("frame / ram")
    expect(page.locator("#assembly-clearance")).to_contain_text("frame / ram, interfering")
    expect(page.locator("#mass-table")).to_contain_text("assembly")
    image, box = _pixels(page)
    red = _count_red(image)
    assert red > 500, f"{red} red pixels"
    screenshot(page, "console-assembly.png")
    # Part frame lies at lower x than the ram; the camera looks from -y, so the frame is on the left.
    ys, xs = np.nonzero((np.asarray(image) < 250).any(axis=2))  # anything drawn on the white background
    left = (int(xs.min()), int(ys[xs == xs.min()].mean()))
    right = (int(xs.max()), int(ys[xs == xs.max()].mean()))
    for (x, y), name in ((left, "frame"), (right, "ram")):
        inside = x + 12 if name == "frame" else x - 12
        page.mouse.move(box["x"] + inside, box["y"] + y)
        expect(page.get_by_role("tooltip")).to_have_text(name)


def test_moving_a_part_clear_in_the_page_removes_the_red(cloud: CloudServer, asked) -> None:
    page, _ = asked
    _open(page, cloud)
    page.locator("#pose-part").select_option("ram")
    expect(page.get_by_label("x (mm)")).to_have_value("90")
    page.get_by_label("x (mm)").fill("130")
    page.get_by_role("button", name="Check this pose").click()
    expect(page.locator("#assembly-view")).to_have_attribute("data-checks", "1", timeout=WAIT_MS)
    expect(page.locator("#assembly-status")).to_contain_text("0 interfering, 0 touching (with the poses below)")
    expect(page.locator("#assembly-clearance")).to_contain_text("clear, 30 mm")
    image, _ = _pixels(page)
    assert _count_red(image) == 0
    page.get_by_label("x (mm)").fill("")  # the browser asks for a number; nothing is sent
    page.get_by_role("button", name="Check this pose").click()
    expect(page.locator("#assembly-view")).to_have_attribute("data-checks", "1")
    page.get_by_role("button", name="Put every part back").click()
    expect(page.locator("#assembly-view")).to_have_attribute("data-checks", "2", timeout=WAIT_MS)
    image, _ = _pixels(page)
    assert _count_red(image) > 500
