"""Counting what reached the cloud, through its history API (paged), per device."""

from __future__ import annotations

from collections import Counter

import httpx


async def stored_values(base_url: str, token: str, device: str, field: str) -> Counter[float | str | bool | None]:
    """How often each value of ``field`` is stored for ``device`` (each frame carries a unique value)."""
    counts: Counter[float | str | bool | None] = Counter()
    cursor: str | None = None
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {token}"}) as client:
        while True:
            params = {"device": device, "fields": field, "start": "946684800", "stop": "4102444800",
                      "limit": "10000"}
            if cursor:
                params["cursor"] = cursor
            response = await client.get("/api/v1/twin/history", params=params)
            if response.status_code == 404:
                return counts  # the device never reached the cloud
            response.raise_for_status()
            page = response.json()
            for series in page["series"]:
                counts.update(value for _, value in series["points"])
            cursor = page.get("next_cursor")
            if not cursor:
                return counts
