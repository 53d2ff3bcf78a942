"""The uplink: sends the durable queue to the cloud and deletes only what the cloud acknowledged.

Batches are cut by count and bytes, MessagePack, compressed, and posted with the
edge's bearer token (``sender``). Transient failures are retried with backoff
and jitter, honouring Retry-After; a batch the cloud refuses for good is
quarantined with the server's reason instead of being retried forever. After an
outage the newest data goes first and the backlog is drained behind it
(``planner``), optionally under a bandwidth cap (``limiter``). ``link`` is the
task that ties them to the store.
"""

from edge.uplink.link import Uplink
from edge.uplink.sender import SyncRetry, UplinkError

__all__ = ["SyncRetry", "Uplink", "UplinkError"]
