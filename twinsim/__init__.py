"""twinsim: a plant simulator that serves machines over Modbus TCP and OPC-UA, with fault injection,
and an MTConnect agent replaying a recorded CNC lathe.

``twinsim run`` serves; ``twinsim config`` prints an edge config that reads it; ``twinsim mtconnect``
serves the MTConnect agent (``twinsim.mtconnect``).
See docs/simulator.md for the register map, node ids and fault specs.

Import from the modules (``twinsim.machine``, ``twinsim.runner``, ...): this
package imports nothing itself, so that importing one module does not load the
Modbus and OPC-UA servers.
"""
