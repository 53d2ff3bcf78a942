"""twinedge edge gateway: sources, embedded broker, durable queue, uplink, CLI."""

__version__ = "0.1.0"
