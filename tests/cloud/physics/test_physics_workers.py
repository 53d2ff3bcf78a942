"""A real server with two worker processes: checks right after an upload find it in every worker."""

from __future__ import annotations

from pathlib import Path

import httpx
from test_physics_store import ASSEMBLIES, upload_body

from tests.cloud.apiclient import auth
from tests.cloud.server import CloudServer


async def test_fifty_checks_right_after_an_upload_all_answer_200_with_two_workers(tmp_path: Path) -> None:
    with CloudServer(tmp_path / "two", server_options="workers = 2") as server:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            up = await client.post(ASSEMBLIES, json=upload_body(), headers=auth(server.admin_token))
            assert up.status_code == 201, up.text
            aid = up.json()["id"]
        answers = []
        for _ in range(50):  # a new connection each time: the kernel spreads them over both workers
            async with httpx.AsyncClient(base_url=server.base_url) as client:
                r = await client.post("/api/v1/physics/collision/check", json={"assembly_id": aid},
                                      headers=auth(server.viewer_token))
            answers.append((r.status_code, r.json().get("interfering")))
        assert answers == [(200, 1)] * 50
        pids = {line.split("[")[1].split("]")[0] for line in server.log if "Started server process" in line}
        assert len(pids) == 2
