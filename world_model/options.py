"""One check for every config built from plain values (Hydra configs, JSON, keyword arguments)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from typing import Any

PRECISIONS = ("auto", "fp32", "bf16")  # the learned network's precision (world_model.model.device)


def check_options(values: Mapping[str, Any], cls: type, what: str, prefix: str = "") -> None:
    """Raise a ``ValueError`` naming the keys of ``values`` that are not fields of the dataclass ``cls``,
    and listing the fields (``prefix`` before each, e.g. ``"agent."`` for a nested group)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        options = sorted(f"{prefix}{name}" for name in known)
        raise ValueError(f"unknown {what} option(s) {unknown}; options are {options}")


MODEL_FLAGS = {"--weights": "weights", "--precision": "precision"}  # flags that take a value
_EXAMPLES = {"--weights": "learned_fast", "--precision": "fp32"}
MODEL_SWITCHES = {"--cpu-compile": ("cpu_compile", "true")}  # flags that set a value


def model_flag_overrides(argv: list[str], key: str) -> list[str]:
    """``argv`` with the learned model's flags of the argparse CLIs (``--weights learned_fast``,
    ``--weights=learned_fast``, ``--precision bf16``, ``--cpu-compile``) turned into Hydra overrides of the
    backend options at ``key`` (``++backend_kwargs.weights=learned_fast``), so that one form works on
    every CLI; everything else is left for Hydra."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        flag, eq, value = arg.partition("=")
        if flag in MODEL_FLAGS:
            if not eq:
                if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                    raise SystemExit(f"{flag} needs a value, e.g. {flag} {_EXAMPLES[flag]}")
                value, i = argv[i + 1], i + 1
            out.append(f"++{key}.{MODEL_FLAGS[flag]}={value}")
        elif arg in MODEL_SWITCHES:
            name, value = MODEL_SWITCHES[arg]
            out.append(f"++{key}.{name}={value}")
        else:
            out.append(arg)
        i += 1
    return out


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The learned model's flags on a CLI that runs an env (the viewer, the demo): each set only when given,
    so an unset flag leaves the backend's default; :func:`model_options` collects them."""
    group = parser.add_argument_group("learned model (backend=learned)")
    group.add_argument("--weights", default=None, help="a shipped name (learned_fast, ...) or a .safetensors")
    group.add_argument("--precision", default=None, choices=PRECISIONS, help="network precision (auto)")
    group.add_argument("--cpu-compile", action="store_true", help="torch.compile the network on the CPU")


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """The env's ``backend_options`` from :func:`add_model_arguments`' flags: only those given."""
    given = {"weights": args.weights, "precision": args.precision, "cpu_compile": args.cpu_compile or None}
    return {k: v for k, v in given.items() if v is not None}
