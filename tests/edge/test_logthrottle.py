"""Rate-limited log lines: the first at once, repeats as one summary with a count."""

from __future__ import annotations

import asyncio
import logging

import pytest

from edge.logthrottle import Throttle, install_loop_exception_handler

log = logging.getLogger("tests.throttle")


async def wait_for_records(caplog: pytest.LogCaptureFixture, count: int, within: float = 5.0) -> list[str]:
    async with asyncio.timeout(within):
        while len(caplog.records) < count:
            await asyncio.sleep(0.01)
    return [r.getMessage() for r in caplog.records]


async def test_a_flood_gives_one_line_then_one_summary_with_the_count(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tests.throttle")
    throttle = Throttle(log, interval=0.2)
    for port in range(812):
        throttle.warning("limit:plant", "refused a connection from 10.0.0.9:%d on listener plant", port)
    throttle.warning("other", "another problem")
    lines = await wait_for_records(caplog, 3)
    assert lines == [
        "refused a connection from 10.0.0.9:0 on listener plant",
        "another problem",
        "refused a connection from 10.0.0.9:811 on listener plant (811 more like this in the last 0 s)",
    ]
    throttle.close()


async def test_after_a_quiet_interval_the_next_one_is_logged_at_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tests.throttle")
    throttle = Throttle(log, interval=0.05)
    assert throttle.warning("k", "first")
    await asyncio.sleep(0.1)  # the window passes without repeats
    assert throttle.warning("k", "second")
    assert [r.getMessage() for r in caplog.records] == ["first", "second"]


async def test_asyncio_error_reports_are_rate_limited_without_tracebacks_for_os_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="tests.throttle")
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    throttle = install_loop_exception_handler(loop, log)
    try:
        for _ in range(1000):
            loop.call_exception_handler({
                "message": "socket.accept() out of system resource", "exception": OSError(24, "Too many open files")
            })
    finally:
        loop.set_exception_handler(previous)
        throttle.close()
    first, summary = caplog.records
    assert first.getMessage() == "socket.accept() out of system resource: [Errno 24] Too many open files"
    assert first.exc_info is None
    assert summary.getMessage().endswith("(999 more like this in the last 60 s)")
