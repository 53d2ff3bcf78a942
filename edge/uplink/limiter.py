"""The backlog's bandwidth cap (``uplink.backlog_bandwidth``): a token bucket of bytes per second.

Live data is never held back; only backlog batches spend tokens. A batch larger
than one second's worth still goes, once the bucket has filled to its size.
"""

from __future__ import annotations

__all__ = ["BandwidthLimiter"]


class BandwidthLimiter:
    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate  # bytes per second; 0 = no cap
        self._tokens = rate
        self._at = now

    def wait_for(self, size: int, now: float) -> float:
        """Seconds to wait before ``size`` bytes may go; 0.0 means they are spent now."""
        if not self.rate:
            return 0.0
        self._tokens = min(float(max(self.rate, size)), self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= size:
            self._tokens -= size
            return 0.0
        return (size - self._tokens) / self.rate
