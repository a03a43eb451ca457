"""Weights and training state in ``safetensors`` (never pickle), with a checked header.

A weights file holds the network's tensors plus string metadata: ``format`` (``FORMAT``), ``version``,
``widths``, ``patch`` (1 when absent: files from before the cheap variant), ``height``/``width``/
``vfov_deg`` it was trained at, ``step`` and free-form ``config`` (JSON).
Loading checks all of it and names what does not match. A training state file adds the optimizer moments.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from world_model.model.network import WorldNet

FORMAT = "dreamx-worldnet"
VERSION = 1


def _architecture(net: WorldNet) -> dict[str, str]:
    return {"widths": json.dumps(list(net.widths)), "patch": str(net.patch), "floor": str(int(net.floor))}


def _network(header: dict[str, str]) -> WorldNet:
    return WorldNet(
        tuple(json.loads(header["widths"])),
        int(header.get("patch", "1")),
        bool(int(header.get("floor", "0"))),
    )


def save_weights(path: str | Path, net: WorldNet, meta: dict[str, Any]) -> None:
    header = {"format": FORMAT, "version": str(VERSION), **_architecture(net)}
    header.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(tensors, str(path), metadata=header)


def read_header(path: str | Path) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no weights at {path}; train some with `dreamx-train` or pass the shipped file"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path} is not a safetensors weights file: {exc}") from exc


def load_weights(path: str | Path, map_location: str = "cpu") -> tuple[WorldNet, dict[str, str]]:
    """The network and its header; ``ValueError`` naming the problem if the file is not ours, of another
    version, or its tensors do not fit the architecture it declares."""
    header = read_header(path)
    if header.get("format") != FORMAT:
        raise ValueError(f"{path}: format {header.get('format')!r}, expected {FORMAT!r}")
    if header.get("version") != str(VERSION):
        raise ValueError(
            f"{path}: weights version {header.get('version')}, this code loads version {VERSION}"
        )
    net = _network(header)
    tensors = load_file(str(path), device=map_location)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(
            f"{path} does not fit WorldNet{tuple(net.widths)} patch {net.patch}: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, "
            f"wrong shapes {[(k, tuple(tensors[k].shape), tuple(expected[k].shape)) for k in wrong[:3]]}"
        )
    net.load_state_dict(tensors)
    return net.eval(), header


def file_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def save_train_state(
    path: str | Path, net: WorldNet, opt: torch.optim.Optimizer, meta: dict[str, Any]
) -> None:
    """Weights, Adam moments and torch's random state, so ``dreamx-train`` resumes where it stopped
    (``meta`` holds the step and the trainer's numpy random state)."""
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    tensors["rng.torch"] = torch.get_rng_state()
    for i, p in enumerate(p for g in opt.param_groups for p in g["params"]):
        for name, value in opt.state.get(p, {}).items():
            tensors[f"opt.{i}.{name}"] = (
                torch.as_tensor(value).detach().cpu().reshape(-1)
                if name == "step"
                else value.detach().cpu().contiguous()
            )
    header = {"format": FORMAT + "-train", "version": str(VERSION), **_architecture(net)}
    header.update({k: json.dumps(v) for k, v in meta.items()})
    tmp = Path(str(path) + ".tmp")
    save_file(tensors, str(tmp), metadata=header)
    tmp.replace(path)


def load_train_state(path: str | Path, net: WorldNet, opt: torch.optim.Optimizer) -> dict[str, Any]:
    header = read_header(path)
    defaults = {"widths": None, "patch": "1", "floor": "0"}  # states from before a field existed
    ours = {k: header.get(k, default) for k, default in defaults.items()}
    if header.get("format") != FORMAT + "-train" or ours != _architecture(net):
        raise ValueError(
            f"{path} is not a training state for WorldNet{tuple(net.widths)} patch {net.patch} floor "
            f"{net.floor}; "
            "start a new out_dir"
        )
    tensors = load_file(str(path))
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    for i, p in enumerate(p for g in opt.param_groups for p in g["params"]):
        state = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"opt.{i}.")}
        if state:
            state["step"] = state["step"].reshape(())
            opt.state[p] = state
    return {k: json.loads(v) for k, v in header.items() if k not in ("format", "version", "widths", "patch")}
