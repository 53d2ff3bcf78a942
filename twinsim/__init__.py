"""twinsim: a plant simulator that serves machines over Modbus TCP and OPC-UA, with fault injection.

``twinsim run`` serves; ``twinsim config`` prints an edge config that reads it.
See docs/simulator.md for the register map, node ids and fault specs.
"""

from twinsim.faults import FaultSpec, FaultSpecError, parse_fault_spec
from twinsim.machine import Machine, Reading
from twinsim.runner import SimSettings, Simulator

__all__ = [
    "FaultSpec",
    "FaultSpecError",
    "Machine",
    "Reading",
    "SimSettings",
    "Simulator",
    "parse_fault_spec",
]
