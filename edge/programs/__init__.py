"""CNC programs: a dialect-aware G-code tokenizer and modal interpreter that extract a program's features
(tools, offsets, holes, path lengths) and estimate its cycle time from a machine profile. Pure: no I/O.

``analyse(data, ...)`` is the entry point; ``edge.sources.programs`` is the harvester that feeds it files.
"""

from edge.programs.interp import Limits
from edge.programs.profiles import MachineProfile
from edge.programs.record import analyse, guess_dialect

__all__ = ["Limits", "MachineProfile", "analyse", "guess_dialect"]
