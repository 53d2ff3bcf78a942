"""Files holding secrets that every user on the machine can read: one warning line each.

The rule: a file that holds a secret must not be readable by "others". That is
every ``token_file``, ``password_file``, TLS ``keyfile`` and OPC-UA
``private_key`` the config names, and the config file itself when it holds a
token or password inline. Group read is fine: a service group is how such
files are shared with the daemon (the systemd unit runs it as its own user).
The daemon logs these warnings at start-up; ``twinedge check-config`` prints them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, SecretStr

__all__ = ["readable_secrets"]

SECRET_FILE_FIELDS = frozenset({"token_file", "password_file", "keyfile", "key_file", "private_key"})


def _walk(value: object, where: str) -> Iterator[tuple[str, object]]:
    """Every (key path, value) below a config model, lists included."""
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            child = getattr(value, name)
            path = f"{where}.{name}" if where else name
            yield path, child
            yield from _walk(child, path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{where}[{index}]")


def readable_secrets(config: BaseModel, config_path: Path | None = None) -> list[str]:
    """One sentence per secret-bearing file that others can read (missing files are reported elsewhere)."""
    files: dict[Path, str] = {}
    for key, value in _walk(config, ""):
        name = key.rsplit(".", 1)[-1]
        if isinstance(value, Path) and name in SECRET_FILE_FIELDS:
            files.setdefault(value, key)
        elif isinstance(value, SecretStr) and config_path is not None:
            files.setdefault(config_path, f"the config file; it holds {key}")
    lines = []
    for path, what in files.items():
        try:
            mode = path.stat().st_mode
        except OSError:
            continue
        if mode & 0o004:
            lines.append(f"{path} ({what}) can be read by every user on this machine (mode {mode & 0o777:03o}); "
                         f"run: chmod o-rwx {path}")
    return lines
