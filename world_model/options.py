"""One check for every config built from plain values (Hydra configs, JSON, keyword arguments)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


def check_options(values: Mapping[str, Any], cls: type, what: str, prefix: str = "") -> None:
    """Raise a ``ValueError`` naming the keys of ``values`` that are not fields of the dataclass ``cls``,
    and listing the fields (``prefix`` before each, e.g. ``"agent."`` for a nested group)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        options = sorted(f"{prefix}{name}" for name in known)
        raise ValueError(f"unknown {what} option(s) {unknown}; options are {options}")
