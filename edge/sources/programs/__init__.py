"""The program harvester: an edge source that watches folders of CNC programs and reports each program's
features and estimated cycle time as a ``program`` document (see ``edge.programs`` for the interpreter)."""
