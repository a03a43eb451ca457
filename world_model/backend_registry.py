"""Backend registry: ``make_backend(name, **kwargs) -> WorldModel``. The server and the env use only this."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from world_model.backend import WorldModel

# The backend used when nobody says otherwise (env, server, CLI, launcher): the shipped learned simulator.
# Change it here and nowhere else.
DEFAULT_BACKEND = "learned"

# name -> (module, class, config class); imported lazily so that "constant" never loads MuJoCo or torch.
_REGISTRY: dict[str, tuple[str, str, str]] = {
    "oracle": ("world_model.engine.oracle", "OracleWorldModel", "OracleConfig"),
    "constant": ("world_model.constant", "ConstantWorldModel", "ConstantConfig"),
    "learned": ("world_model.model.learned", "LearnedWorldModel", "LearnedConfig"),
}
BACKENDS: tuple[str, ...] = ("oracle", "learned", "constant")


def check_backend(name: str) -> None:
    """Raise the error :func:`make_backend` would raise for ``name``, without building anything."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")


def make_backend(name: str, **kwargs: Any) -> WorldModel:
    """Build a backend by name; ``kwargs`` are fields of its config dataclass (``height=64, width=64``)."""
    check_backend(name)
    module_name, cls_name, cfg_name = _REGISTRY[name]
    module = importlib.import_module(module_name)
    cls, cfg_cls = getattr(module, cls_name), getattr(module, cfg_name)
    known = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ValueError(f"backend {name!r} has no option(s) {unknown}; its options are {sorted(known)}")
    return cls(cfg_cls(**kwargs))
