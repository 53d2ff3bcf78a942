"""Config of a program harvester: the folders it watches, which files are programs, how often it looks,
and the machine profile its cycle-time estimates use. Loading it needs nothing beyond pydantic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from edge.programs.profiles import MachineProfile
from shared.configbase import ByteSize, Duration, StrictModel
from shared.frame import DEVICE_ID_PATTERN

__all__ = ["DEFAULT_EXTENSIONS", "ProgramFolder", "ProgramsSourceConfig"]

DEFAULT_EXTENSIONS = (".nc", ".ngc", ".tap", ".mpf", ".min")


class ProgramFolder(StrictModel):
    """One watched folder: a local directory or a mounted share (CIFS, NFS)."""

    name: str = Field(pattern=DEVICE_ID_PATTERN, description="the folder's name in records and events")
    path: Path = Field(description="absolute path of the folder")
    recursive: bool = Field(True, description="look into subfolders too")
    dialect: Literal["fanuc", "haas", "linuxcnc", "siemens", "okuma"] | None = Field(
        None, description="force the dialect; default: from the extension (.mpf Siemens, .min Okuma, .ngc "
                          "LinuxCNC) and the program's words (Haas), else Fanuc")

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        if not path.is_absolute():
            raise ValueError(f"must be an absolute path (got {str(path)!r})")
        return path


class ProgramsSourceConfig(StrictModel):
    """A program harvester: folders to watch and how to read them."""

    kind: Literal["programs"]
    name: str = Field(pattern=DEVICE_ID_PATTERN, description="source name")
    device_id: str | None = Field(None, pattern=DEVICE_ID_PATTERN,
                                  description="the machine these programs are for, when the folders are one machine's")
    folders: list[ProgramFolder] = Field(min_length=1, max_length=32)
    extensions: list[str] = Field(default_factory=lambda: list(DEFAULT_EXTENSIONS), min_length=1, max_length=64,
                                  description="file name endings that are programs (case does not matter)")
    scan_interval: Duration = Field(10.0, ge=0.05, le=86_400.0,
                                    description="time between scans (polling works on every share)")
    settle_time: Duration = Field(2.0, ge=0.0, le=3_600.0,
                                  description="a file is read once its size and mtime stayed unchanged this long")
    # Interpreting holds about 500 bytes per line: 4 MiB of short lines peaks near 250 MB.
    max_file_size: ByteSize = Field(4 * 1024**2, ge=1024, le=256 * 1024**2, description="larger files are reported, "
                                    "not read (interpreting holds about 500 bytes per line)")
    max_files: int = Field(20_000, ge=1, le=30_000, description="files tracked per harvester")
    max_blocks: int = Field(2_000_000, ge=1_000, le=50_000_000,
                            description="blocks one program may execute (subprogram repeats included; a "
                                        "canned-cycle hole counts 4, a peck 2)")
    machine_profile: MachineProfile = Field(default_factory=MachineProfile)
    tool_diameters: dict[int, float] = Field(
        default_factory=dict, max_length=10_000,
        description="tool diameters in mm by tool (T) or offset (D) number, for cutter compensation and where a "
                    "tool's comment gives none")

    @field_validator("tool_diameters")
    @classmethod
    def _diameters(cls, values: dict[int, float]) -> dict[int, float]:
        for tool, diameter in values.items():
            if not 0 <= tool <= 99_999 or not 0 < diameter < 10_000:
                raise ValueError(f"tool {tool}: a diameter must be above 0 and below 10000 mm (got {diameter})")
        return values

    @field_validator("extensions")
    @classmethod
    def _extensions(cls, values: list[str]) -> list[str]:
        out = []
        for value in values:
            ext = value.strip().lower()
            ext = ext if ext.startswith(".") else "." + ext
            if len(ext) < 2 or len(ext) > 16 or "/" in ext:
                raise ValueError(f"not a file extension: {value!r}")
            out.append(ext)
        return sorted(set(out))

    @model_validator(mode="after")
    def _unique_names(self) -> ProgramsSourceConfig:
        names = [f.name for f in self.folders]
        if len(set(names)) != len(names):
            raise ValueError("every folder needs its own name")
        return self
