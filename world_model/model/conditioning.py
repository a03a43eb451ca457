"""Network inputs from memory, target camera and world state: one code path for training and inference."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from world_model.geometry import Intrinsics
from world_model.model.memory import MemoryEntry, camera_distance
from world_model.model.network import depth_from_inverse, inverse_depth
from world_model.model.reproject import SAME_SURFACE, splat, view_points
from world_model.model.world_state import HINT_CHANNELS, WorldState
from world_model.semantics import CLASS_ID

STALE = 1 << 29  # a memory seen in another look of the world ranks after every current one (< 2^31)
SKY_M = 1000.0  # sky (infinite depth) is warped as a far plane, so turning keeps it where it was seen


class Warp(NamedTuple):
    """Memories splatted into target cameras, as ``reproject.splat`` returns them: colour, lights and door
    planes ``feats [G, 5, H, W]`` (0 where nothing landed), z-depth ``zbuf [G, H, W]`` (inf there) and
    ``mask [G, H, W]`` (where something landed). ``assemble`` makes them the input's channels 0-6."""

    feats: torch.Tensor
    zbuf: torch.Tensor
    mask: torch.Tensor


def warp_memories(
    memories: list[list[MemoryEntry]],
    target_poses: np.ndarray,
    intr: Intrinsics,
    prefer_older: bool | str = False,
    footprint: int = 1,
    zbuffer: Callable | None = None,
    tolerance: float = SAME_SURFACE,
    door_open: list[bool] | None = None,
    looks: list[tuple[bool, bool]] | None = None,
) -> Warp:
    """What channels 0-6 of the input are made of (see ``network``): every target's memories splatted into
    its camera.
    With ``prefer_older`` (True or "oldest"), a surface seen by several memories (depths within
    ``tolerance``, relative, of the nearest) comes from the oldest one (fewest generations of accumulated
    error: revisits show what was seen first); with "nearest_view", from the memory whose camera was nearest
    the target's (``memory.camera_distance``: its warp is the least sensitive to depth error, and at a
    revisit it is the view taken there); False: the nearest depth wins.
    ``footprint`` and ``zbuffer`` are ``reproject.splat``'s (footprint 2 closes one-pixel cracks).
    ``door_open`` (per target): the door's state now; a memory that saw the door in the other state leaves
    the door's pixels out (the network draws what is there now, not the door as it was). ``looks`` (per
    target): the world's look now (``WorldState.look``); with a priority rule, memories seen in this look
    come before those seen in another (before the lights or the door changed), whatever their age."""
    entries = [e for mem in memories for e in mem]
    dev = entries[0].rgb.device  # memories live where the network runs
    owner = [b for b, mem in enumerate(memories) for _ in mem]  # each memory's target
    groups = torch.tensor(owner, device=dev)
    src = torch.as_tensor(np.stack([e.pose for e in entries]), dtype=torch.float64, device=dev)
    dst = torch.as_tensor(np.asarray(target_poses), dtype=torch.float64, device=dev)
    priority = _priority(entries, np.asarray(target_poses)[owner], prefer_older)
    if priority is not None and looks is not None:
        stale = np.array([e.look != looks[b] for e, b in zip(entries, owner, strict=True)])
        priority = np.minimum(priority, STALE - 1) + stale * STALE
    priority = None if priority is None else torch.as_tensor(priority, device=dev)
    lights = _lights_planes(intr.height, intr.width, dev)
    sources = [(e.rgb, lights[e.lights], e.door) for e in entries]  # read in place by the C kernel
    depths = [e.depth for e in entries]
    if door_open is not None:
        depths = [
            torch.where(e.door > 0.5, 0.0, e.depth) if e.door_open != door_open[b] else e.depth  # 0: none
            for e, b in zip(entries, owner, strict=True)
        ]
    warped, zbuf, mask = splat(
        sources, depths, src, dst, groups, len(memories), intr, priority, tolerance,
        footprint=footprint, zbuffer=zbuffer, far=SKY_M,  # the sky turns with the camera
    )  # fmt: skip
    return Warp(warped, zbuf, mask)


def _priority(entries: list[MemoryEntry], targets: np.ndarray, rule: bool | str) -> np.ndarray | None:
    """The z-buffer priority of each memory (lower wins among depths of one surface) for ``rule``."""
    if rule is False or rule is None:
        return None
    if rule is True or rule == "oldest":
        return np.array([e.time for e in entries], np.int64)
    if rule == "nearest_view":
        dist = camera_distance(np.stack([e.pose for e in entries]), targets)
        return np.minimum(np.round(dist * 1000.0), 1 << 30).astype(np.int64)  # millimetre-like units
    raise ValueError(f"unknown memory priority {rule!r}: use False, 'oldest' or 'nearest_view'")


@functools.lru_cache(maxsize=4)
def _lights_planes(h: int, w: int, device: torch.device) -> dict[bool, torch.Tensor]:
    """The lights channel of a memory seen with the lights on (+1) or off (-1), one shared plane each."""
    return {True: torch.ones(h, w, device=device), False: torch.full((h, w), -1.0, device=device)}


def assemble(
    warp: Warp,
    hints: np.ndarray | torch.Tensor | None,
    estimate: torch.Tensor | None = None,
    depth_known: bool | torch.Tensor = True,
    dtype: torch.dtype = torch.float32,
    floor: torch.Tensor | None = None,
) -> torch.Tensor:
    """The network's input ``[B, in_channels, H, W]`` (channels last; the channels are listed in ``network``)
    from a ``Warp``, hint channels (``None``: none), the current estimate (default: the warp itself, i.e.
    the first sampling step, see :func:`current_estimate`), whether depth is known (a bool, or one per row
    ``[B]``) and, for a network with the floor channel, the floor plane's depth ``floor [B, H, W]`` along
    each pixel's ray (``reproject.floor_depth``), in ``dtype``: bfloat16 writes the input once, as autocast
    would round it for the convolutions (the network then needs the estimate in full precision beside
    it). Generation runs it inside the network's CUDA graph or compiled kernels
    (``LearnedWorldModel._forward``)."""
    feats, zbuf, mask = warp
    b, _, h, w = feats.shape
    m = mask.float()[:, None]
    if isinstance(depth_known, torch.Tensor):
        known = depth_known.float()[:, None, None, None].expand_as(m)
    else:
        known = torch.full_like(m, float(depth_known))
    if hints is None:
        hints = torch.zeros(b, HINT_CHANNELS, h, w, device=feats.device)
    planes = [
        feats[:, 0:3],
        inverse_depth(zbuf)[:, None] * m,
        m,
        feats[:, 3:5],
        known,
        current_estimate(warp, estimate),
        torch.full_like(m, 0.0 if estimate is None else 1.0),
        torch.as_tensor(hints, device=feats.device),
    ]
    if floor is not None:
        planes.append(inverse_depth(floor.to(feats.device, torch.float32))[:, None])
    # each part cast before the concatenation: compiled, one pass writes the input in dtype (cast after, a
    # float32 input is written, then read again to round it; docs/speed.md)
    planes = [p.to(dtype) for p in planes]
    return torch.cat(planes, dim=1).contiguous(memory_format=torch.channels_last)


def current_estimate(warp: Warp, estimate: torch.Tensor | None) -> torch.Tensor:
    """Channels 8-10 of the input: ``estimate``, or on the first sampling step (``None``) the warp colour."""
    return warp.feats[:, 0:3] if estimate is None else estimate


def first_frame_warp(rgb: torch.Tensor) -> Warp:
    """The ``Warp`` that encodes given frames ``rgb [B,3,H,W]`` in [-1, 1] (with ``depth_known`` off: colour
    known, depth and semantics to predict, by the same network): the colour everywhere, seen with the
    lights on, no depth."""
    b, _, h, w = rgb.shape
    feats = torch.zeros(b, h, w, 5, device=rgb.device).permute(0, 3, 1, 2)
    feats[:, 0:3] = rgb
    feats[:, 3] = 1.0
    zbuf = torch.full((b, h, w), float("inf"), device=rgb.device)
    return Warp(feats, zbuf, torch.ones(b, h, w, dtype=torch.bool, device=rgb.device))


def first_frame_inputs(rgb: torch.Tensor, floor: torch.Tensor | None = None) -> torch.Tensor:
    """The full input for encoding given frames ``rgb [B,3,H,W]`` (see ``first_frame_warp``), with the floor
    plane's depth for a network that takes it."""
    return assemble(first_frame_warp(rgb), None, depth_known=False, floor=floor)


def state_batch(states: list[WorldState]) -> torch.Tensor:
    return torch.from_numpy(np.stack([s.vector() for s in states]))


def memory_planes(rgb: torch.Tensor, depth: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """What a memory keeps of a frame, ``[B, 5, H, W]``: colour ``rgb [B, 3, H, W]`` in [-1, 1], metric
    ``depth [B, H, W]`` and the door pixels of the semantic ``labels [B, H, W]`` (1 where the door is)."""
    door = (labels == CLASS_ID["door"]).float()
    return torch.cat([rgb, depth[:, None], door[:, None]], dim=1)


def entries_from_outputs(
    out: dict[str, torch.Tensor],
    poses: np.ndarray,
    times: list[int],
    states: list[WorldState],
    intr: Intrinsics,
    host_depth: np.ndarray | None = None,
) -> list[MemoryEntry]:
    """Memories of generated frames: the network's colour, depth and door pixels at ``poses``. ``out`` may
    carry ``labels`` (the semantic argmax) and metric ``depth`` to save computing them again, or all that a
    memory keeps as ``planes`` (:func:`memory_planes`); ``host_depth`` is that depth already copied to the
    host, if the caller has it."""
    depth = out["depth"] if "depth" in out else depth_from_inverse(out["inv_depth"].detach().float())
    if "planes" in out:
        frames = out["planes"]
    else:
        labels = out["labels"] if "labels" in out else out["semantic"].detach().argmax(1)
        frames = memory_planes(out["rgb"].detach().float(), depth, labels)
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
