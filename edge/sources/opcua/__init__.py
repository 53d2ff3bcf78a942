"""The OPC-UA source unit (asyncua): ``config`` (loads without asyncua), ``client`` (sessions, security,
errors in plain words), ``subscription`` and ``nodes`` (monitored items, frame assembly), ``values``
(decoding), ``source`` (the session loop) and ``probe`` (``twinedge probe opcua``).

Only the config is exported here, so that loading an edge config does not import asyncua.
"""

from edge.sources.opcua.config import OpcUaNodeConfig, OpcUaSecurityConfig, OpcUaSourceConfig, check_node_id

__all__ = ["OpcUaNodeConfig", "OpcUaSecurityConfig", "OpcUaSourceConfig", "check_node_id"]
