"""A test MTConnect agent for the simulator: an SHDR replay (the Okuma lathe recording by default) served
over HTTP with probe, current, sample (plain and multipart streaming), assets and errors, and faults for
tests (restarts, stalls, disconnects, pause). See docs/simulator.md.

``shdr`` reads adapter text, ``model`` the device model, ``store`` holds the buffer, state and assets,
``documents`` renders the XML, ``http`` and ``server`` serve it, ``agent`` runs the replay and the controls.
"""

from twinsim.mtconnect.agent import DATA_DIR, VERSIONS, AgentSettings, MTConnectAgent
from twinsim.mtconnect.store import AssetRecord, Record

__all__ = ["DATA_DIR", "VERSIONS", "AgentSettings", "AssetRecord", "MTConnectAgent", "Record"]
