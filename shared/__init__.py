"""Contracts the edge and the cloud both speak: the telemetry frame (``shared.frame``), the sync batch
(``shared.batch``), the codec (``shared.codec``), config building blocks (``shared.configbase``) and the
error types (``shared.errors``).

Import from the modules: this package itself imports nothing, so that a command that needs only the
error types (``twinedge --help``, ``twinedge status``) does not load pydantic.
"""
