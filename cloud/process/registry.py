"""The process models a binding can name: the built-in ones, and those a cloud config adds (``[process] models``).

A model is named by an import path ``"package.module:Class"`` and loaded when a
binding first needs it. A name that is not known, or a path that does not
import or does not meet the ``ProcessModel`` contract, is a clear error naming it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from cloud.process.model import ProcessModel
from shared.errors import InputError

__all__ = ["BUILTIN_MODELS", "ModelRegistry", "UnknownProcessModel"]

# name -> "module:Class"; the PUR foam model registers here.
BUILTIN_MODELS: dict[str, str] = {"pur-foam": "cloud.process.pur.model:PurModel"}


class UnknownProcessModel(InputError):
    """A binding names a process model that is not known or cannot be loaded."""


class ModelRegistry:
    def __init__(self, extra: Mapping[str, str] | None = None) -> None:
        self.paths = {**BUILTIN_MODELS, **(extra or {})}
        self._loaded: dict[str, ProcessModel] = {}

    def get(self, name: str, path: str = "model") -> ProcessModel:
        if name in self._loaded:
            return self._loaded[name]
        target = self.paths.get(name)
        if target is None:
            raise UnknownProcessModel(f"no process model named {name!r}; known: "
                                      f"{', '.join(sorted(self.paths)) or 'none'}", path)
        module, _, attr = target.partition(":")
        try:
            cls: Any = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise UnknownProcessModel(f"process model {name!r} ({target}) cannot be loaded: {exc}", path) from None
        for needed in ("name", "version", "inputs", "outputs", "Parameters", "run"):
            if not hasattr(cls, needed):
                raise UnknownProcessModel(f"process model {name!r} ({target}) has no {needed!r}", path)
        model: ProcessModel = cls()
        self._loaded[name] = model
        return model
