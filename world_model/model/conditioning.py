"""Network inputs from memory, target camera and world state: one code path for training and inference."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

from world_model.geometry import Intrinsics
from world_model.model.memory import MemoryEntry
from world_model.model.network import IN_CHANNELS, inverse_depth
from world_model.model.reproject import splat
from world_model.model.world_state import WorldState

SKY_M = 1000.0  # sky (infinite depth) is warped as a far plane, so turning keeps it where it was seen


def warp_memories(
    memories: list[list[MemoryEntry]],
    target_poses: np.ndarray,
    intr: Intrinsics,
    prefer_older: bool = False,
    footprint: int = 1,
    zbuffer: Callable | None = None,
) -> torch.Tensor:
    """Channels 0-6 of the input (see ``network``): every target's memories splatted into its camera.
    With ``prefer_older``, a surface seen by several memories comes from the oldest one (fewest generations
    of accumulated error: revisits show what was seen first); otherwise the nearest depth wins.
    ``footprint`` and ``zbuffer`` are ``reproject.splat``'s (footprint 2 closes one-pixel cracks)."""
    entries = [e for mem in memories for e in mem]
    dev = entries[0].rgb.device  # memories live where the network runs
    groups = torch.tensor([b for b, mem in enumerate(memories) for _ in mem], device=dev)
    src = torch.as_tensor(np.stack([e.pose for e in entries]), dtype=torch.float64, device=dev)
    dst = torch.as_tensor(np.asarray(target_poses), dtype=torch.float64, device=dev)
    priority = torch.tensor([e.time for e in entries], device=dev) if prefer_older else None
    lights = _lights_planes(intr.height, intr.width, dev)
    sources = [(e.rgb, lights[e.lights], e.door) for e in entries]  # read in place by the C kernel
    warped, zbuf, mask = splat(
        sources, [e.depth for e in entries], src, dst, groups, len(memories), intr, priority,
        footprint=footprint, zbuffer=zbuffer, far=SKY_M,  # the sky turns with the camera
    )  # fmt: skip
    g, _, h, w = warped.shape
    out = torch.empty(g, h, w, 7, device=dev).permute(0, 3, 1, 2)  # channels last, as the network takes it
    m = mask.float()
    out[:, 0:3] = warped[:, 0:3]
    out[:, 3] = inverse_depth(zbuf) * m
    out[:, 4] = m
    out[:, 5:7] = warped[:, 3:5]
    return out


@functools.lru_cache(maxsize=4)
def _lights_planes(h: int, w: int, device: torch.device) -> dict[bool, torch.Tensor]:
    """The lights channel of a memory seen with the lights on (+1) or off (-1), one shared plane each."""
    return {True: torch.ones(h, w, device=device), False: torch.full((h, w), -1.0, device=device)}


def assemble(
    warped: torch.Tensor,
    hints: np.ndarray | torch.Tensor | None,
    estimate: torch.Tensor | None = None,
    depth_known: bool = True,
) -> torch.Tensor:
    """Full input ``[B, IN_CHANNELS, H, W]`` from ``warp_memories`` output, hint channels (``None``: none)
    and the current estimate (default: the warp itself, i.e. the first sampling step)."""
    b, _, h, w = warped.shape
    x = torch.empty(b, h, w, IN_CHANNELS, device=warped.device).permute(0, 3, 1, 2)  # channels last
    x[:, 0:7] = warped
    x[:, 7] = 1.0 if depth_known else 0.0
    x[:, 8:11] = warped[:, 0:3] if estimate is None else estimate
    x[:, 11] = 0.0 if estimate is None else 1.0
    x[:, 12:18] = 0.0 if hints is None else torch.as_tensor(hints, device=warped.device)
    return x


def first_frame_inputs(rgb: torch.Tensor) -> torch.Tensor:
    """Input for encoding given frames ``rgb [B,3,H,W]`` in [-1, 1]: colour known, depth and semantics to
    predict (the same network, with the depth-known flag off)."""
    b, _, h, w = rgb.shape
    warped = torch.zeros(b, 7, h, w, device=rgb.device)
    warped[:, 0:3] = rgb
    warped[:, 4] = 1.0
    warped[:, 5] = 1.0
    return assemble(warped, None, depth_known=False)


def state_batch(states: list[WorldState]) -> torch.Tensor:
    return torch.from_numpy(np.stack([s.vector() for s in states]))


def entries_from_outputs(
    out: dict[str, torch.Tensor],
    poses: np.ndarray,
    times: list[int],
    states: list[WorldState],
    intr: Intrinsics,
    host_depth: np.ndarray | None = None,
) -> list[MemoryEntry]:
    """Memories of generated frames: the network's colour, depth and door pixels at ``poses``. ``out`` may
    carry ``labels`` (the semantic argmax) and metric ``depth`` to save computing them again; ``host_depth``
    is that depth already copied to the host, if the caller has it."""
    from world_model.model.network import depth_from_inverse
    from world_model.model.reproject import view_points
    from world_model.semantics import CLASS_ID

    depth = out["depth"] if "depth" in out else depth_from_inverse(out["inv_depth"].detach().float())
    labels = out["labels"] if "labels" in out else out["semantic"].detach().argmax(1)
    door = (labels == CLASS_ID["door"]).float()
    frames = torch.cat([out["rgb"].detach().float(), depth[:, None], door[:, None]], dim=1)
    poses = np.asarray(poses, np.float64)
    points = view_points(depth.cpu().numpy() if host_depth is None else host_depth, poses, intr)
    entries = []
    for i, s in enumerate(states):
        own = frames[i].clone()  # a copy, not a view: a kept memory must not pin the whole batch's tensors
        entries.append(
            MemoryEntry(
                own[0:3], own[3], own[4], poses[i], times[i], s.lights_on, s.door_open, s.version, points[i]
            )
        )
    return entries
