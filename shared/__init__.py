"""Contracts the edge and the cloud both speak: the telemetry frame (``shared.frame``), the sync batch
(``shared.batch``), the codec (``shared.codec``), config building blocks (``shared.configbase``), the
error types (``shared.errors``), and a model's input: window features (``shared.features``, numpy) and the input
schema a model package carries (``shared.modelschema``).

Import from the modules: this package itself imports nothing, so that a command that needs only the
error types (``twinedge --help``, ``twinedge status``) does not load pydantic.
"""
