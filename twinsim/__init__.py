"""twinsim: a plant simulator that serves machines over Modbus TCP and OPC-UA, with fault injection.

``twinsim run`` serves; ``twinsim config`` prints an edge config that reads it.
See docs/simulator.md for the register map, node ids and fault specs.

Import from the modules (``twinsim.machine``, ``twinsim.runner``, ...): this
package imports nothing itself, so that importing one module does not load the
Modbus and OPC-UA servers.
"""
