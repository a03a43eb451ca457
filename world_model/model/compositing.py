"""What the world state and memory decide in a generated frame beyond the network's output.

Props (``composite_props``): what events put in the world, drawn where the world state says it is.

A dropped ball or box and a painted object are part of the session's ``WorldState`` (``world_state``), drawn
into every target camera as hint channels that the network sees. The network alone does not draw them
reliably, so after it runs, the props are composited into its output deterministically, and they still sit
in the scene the network made: a prop pixel shows only where the prop is nearer than the surface the network
predicted there (nearer walls and furniture hide it), it is shaded for the lights (``SHADE``), and the frame's
depth takes the prop's depth there, so memory, collision and later views see it. Paint recolours the object
pixels the network predicts inside the paint's footprint. The same state draws the same pixels from the same
view, so a prop is where it was on every revisit.

The room's geometry (on by default, ``docs/world_model.md``): ``ground_depth`` (floor pixels take the floor
plane's depth, which the camera's height fixes), ``wall_depth`` (wall pixels take the depth of the room's
walls, the sides of the footprint the camera is kept in) and ``fill_unseen`` (pixels no memory covers take
the first frame's colour of the surface their ray meets first, ``layout_labels``). ``keep_warped_depth``
(where memory covers a frame, it keeps the warped memory's depth) was measured and is left off.
"""

from __future__ import annotations

import numpy as np
import torch

from world_model.geometry import Intrinsics, unproject
from world_model.model.conditioning import SKY_M, Warp
from world_model.model.data import from_unit
from world_model.model.network import depth_from_inverse
from world_model.model.reproject import floor_depth
from world_model.model.splat_rules import camera_rays
from world_model.model.world_state import SHADE
from world_model.semantics import CLASS_ID, OBJECT_CLASS_IDS, SEMANTIC_CLASSES

OCCLUSION_MARGIN = 0.03  # a prop shows where it is no more than this fraction behind the predicted surface


def _paint(out: dict[str, torch.Tensor], show: torch.Tensor, colour: torch.Tensor) -> None:
    """Where ``show [B, H, W]``, the frame's colour becomes ``colour [B, 3, H, W]`` (in [-1, 1]), in the
    planes and in the colour bytes alike, in place."""
    planes = out["planes"]
    planes[:, 0:3] = torch.where(show[:, None], colour, planes[:, 0:3])
    out["colour"] = torch.where(show[..., None], from_unit(colour), out["colour"])


def composite_props(out: dict[str, torch.Tensor], hints: torch.Tensor, lights_on: torch.Tensor) -> None:
    """Draw the props of ``hints [B, 6, H, W]`` (``WorldState.hints``) into the network's outputs ``out``
    (``planes``, ``labels``, ``colour``, as ``LearnedWorldModel._forward`` returns them), in place, for
    sessions with the lights ``lights_on [B]`` (bool)."""
    planes, labels = out["planes"], out["labels"]
    rgb, depth = planes[:, 0:3], planes[:, 3]
    obj, paint = hints[:, 3] > 0.5, hints[:, 4] > 0.5
    prop_depth = depth_from_inverse(hints[:, 5].float())
    shown = obj & (prop_depth <= depth * (1 + OCCLUSION_MARGIN))
    is_object = torch.isin(labels, torch.tensor(OBJECT_CLASS_IDS, device=labels.device))
    painted = paint & is_object & ~shown
    shade = torch.where(lights_on.to(rgb.device), SHADE[True], SHADE[False]).to(rgb.dtype)
    colour = ((hints[:, 0:3].to(rgb.dtype) + 1) * 0.5 * shade[:, None, None, None]) * 2 - 1
    _paint(out, shown | painted, colour)
    planes[:, 3] = torch.where(shown, prop_depth.to(depth.dtype), depth)


def keep_warped_depth(out: dict[str, torch.Tensor], warp: Warp) -> None:
    """Where memory covers the frame (``warp.mask``), its depth becomes the warped memory's depth (the sky
    stays the sky), in place: a surface keeps the depth it was first given instead of the network's
    re-prediction of it, whose small errors would add up frame after frame."""
    depth = out["planes"][:, 3]
    warped = torch.where(warp.zbuf >= SKY_M * 0.5, torch.full_like(warp.zbuf, float("inf")), warp.zbuf)
    depth.copy_(torch.where(warp.mask, warped.to(depth.dtype), depth))


FLOOR_FAR_M = 20.0  # floor pixels farther than this (near the horizon) do not set the scale
FLOOR_PIXELS_MIN = 32  # floor pixels a frame needs before its depth is scaled to the floor's
SCALE_LIMITS = (0.5, 2.0)  # the scale correction never goes beyond these


def ground_depth(
    out: dict[str, torch.Tensor],
    poses: torch.Tensor,
    intr: Intrinsics,
    rescale: bool = True,
    plane: torch.Tensor | None = None,
) -> None:
    """Make the predicted depth agree with the floor, in place. The floor is the plane z = 0 and the camera's
    height and pitch are known, so the depth of every pixel the network labels floor is known exactly; the
    network's depth elsewhere shares the error it made on the floor (a monocular guess of the scale), so it
    is scaled by the median of floor / predicted depth over the floor pixels (within ``SCALE_LIMITS``,
    when a frame shows at least ``FLOOR_PIXELS_MIN`` of them), and the floor pixels take the plane's depth.
    Without this, depth drifts from frame to frame (each frame's depth is the warp of the last one's, plus
    the network's correction), and memories of one place disagree about where it is."""
    depth, labels = out["planes"][:, 3], out["labels"]
    if plane is None:  # (``plane``: this floor depth, when the caller has it)
        plane = floor_depth(poses.to(depth.device, torch.float64), intr)
    plane = plane.to(depth.device, depth.dtype)
    floor = (
        (labels == CLASS_ID["floor"]) & torch.isfinite(plane) & (plane < FLOOR_FAR_M) & torch.isfinite(depth)
    )
    ratio = torch.where(floor, plane / depth.clamp_min(1e-3), torch.full_like(depth, float("nan")))
    scale = torch.nanmedian(ratio.flatten(1), dim=1).values
    enough = floor.flatten(1).sum(1) >= FLOOR_PIXELS_MIN
    scale = torch.where(enough & rescale, scale.clamp(*SCALE_LIMITS), torch.ones_like(scale))
    depth.copy_(torch.where(floor, plane, depth * scale[:, None, None]))


def wall_depth(out: dict[str, torch.Tensor], room: torch.Tensor) -> None:
    """Make the predicted depth agree with the room's walls, in place. The walls' inner faces are the sides
    of the footprint the camera may stand in (``reproject.room_depth`` gives, per pixel, where the ray leaves
    it: ``room [B, H, W]``), so the depth of every pixel the network labels wall is known exactly, and no
    surface in the room is farther than the wall behind it. Sky and door pixels keep the network's depth
    (an open door and what the doorway shows lie beyond the wall). Without this, depth drifts where the
    camera faces a wall: each frame's depth is the warp of the last one's plus the network's correction,
    and a wall walked towards comes out ever nearer."""
    depth, labels = out["planes"][:, 3], out["labels"]
    room = room.to(depth.device, depth.dtype)
    known = torch.isfinite(room)
    wall = known & (labels == CLASS_ID["wall"])
    inside = known & (labels != CLASS_ID["sky"]) & (labels != CLASS_ID["door"])
    depth.copy_(torch.where(wall, room, torch.where(inside, torch.minimum(depth, room), depth)))


BEYOND_ROOM_RGB = 72 / 127.5 - 1.0  # what a room's open doorway shows above the floor (the engine's grey
# outside of a room, 72/255 in every channel, std 3, through 32 training scenes' open doors); in [-1, 1]
DOORWAY_OCCLUSION = 0.05  # a pixel shows the doorway where its surface is no more than this much nearer


def open_doorway(
    out: dict[str, torch.Tensor],
    through: torch.Tensor,
    room: torch.Tensor,
    floor: torch.Tensor,
    ground: torch.Tensor,
    floor_rgb: torch.Tensor,
    beyond_rgb: torch.Tensor,
) -> None:
    """Show what an open door lets the camera see, in place: where a pixel's ray leaves the room through
    the doorway (``through [B, H, W]``, ``reproject.doorway_pixels``) and no nearer surface is drawn (depth
    not under ``room [B, H, W]`` by more than ``DOORWAY_OCCLUSION``), the floor going on outside (where
    ``floor [B, H, W]`` is beyond the wall and ``ground [B, H, W]``, ``reproject.ground_reach``, says the
    ground is there; colour ``floor_rgb [B, 3]``) or what is beyond it (``beyond_rgb [B, 3]``, sky depth),
    in place of the door the memory and the network still draw. NaN colour rows leave those pixels as
    they are."""
    planes, labels = out["planes"], out["labels"]
    dev, dtype = planes.device, planes.dtype
    room, floor = room.to(dev, dtype), floor.to(dev, dtype)
    depth = planes[:, 3]
    show = through.to(dev) & (depth >= room * (1 - DOORWAY_OCCLUSION))
    on_floor = (floor > room) & ground.to(dev)
    floor_rgb, beyond_rgb = floor_rgb.to(dev, dtype), beyond_rgb.to(dev, dtype)
    colour = torch.where(on_floor[:, None], floor_rgb[:, :, None, None], beyond_rgb[:, :, None, None])
    show &= torch.isfinite(colour).all(dim=1)
    _paint(out, show, colour)
    depth.copy_(torch.where(show, torch.where(on_floor, floor, torch.full_like(floor, SKY_M)), depth))
    beyond = torch.where(on_floor, CLASS_ID["floor"], CLASS_ID["sky"]).to(labels.dtype)
    labels.copy_(torch.where(show, beyond, labels))


def draw_open_door(out: dict[str, torch.Tensor], door: torch.Tensor, door_rgb: torch.Tensor) -> None:
    """Draw the open door's panel in place where it is the nearest surface: ``door [B, H, W]``
    (``reproject.open_door_depth``) nearer than the depth drawn, in ``door_rgb [B, 3]`` (NaN rows: not
    drawn)."""
    planes, labels = out["planes"], out["labels"]
    dev, dtype = planes.device, planes.dtype
    door, door_rgb = door.to(dev, dtype), door_rgb.to(dev, dtype)
    depth = planes[:, 3]
    show = (door < depth) & torch.isfinite(door_rgb).all(dim=1)[:, None, None]
    _paint(out, show, door_rgb[:, :, None, None].expand_as(planes[:, 0:3]))
    depth.copy_(torch.where(show, door, depth))
    labels.copy_(torch.where(show, torch.full_like(labels, CLASS_ID["door"]), labels))


DOOR_PIXELS_MIN = 8  # the first frame must show this many pixels of the closed door to know its colour


def door_colour(
    rgb: torch.Tensor, depth: torch.Tensor, through: torch.Tensor, room: torch.Tensor
) -> torch.Tensor:
    """The closed door's colour ``[3]`` (median, in [-1, 1]) in one frame ``rgb [3, H, W]``: the pixels whose
    ray leaves the room through the doorway (``through [H, W]``) and that show the wall's plane there
    (``depth`` within ``DOORWAY_OCCLUSION`` of ``room [H, W]``), so the door itself; NaN where the frame
    shows fewer than ``DOOR_PIXELS_MIN`` of them."""
    seen = through & (depth.to(room.dtype) >= room * (1 - DOORWAY_OCCLUSION))
    if int(seen.sum()) < DOOR_PIXELS_MIN:
        return torch.full((3,), float("nan"))
    return rgb.float()[:, seen].median(dim=1).values


LAYOUT_CLASSES = ("sky", "floor", "wall", "ceiling")  # the surfaces one colour describes well enough
PALETTE_PIXELS_MIN = 16  # a surface needs this many pixels in the first frame to have a palette colour


def surface_palette(rgb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The mean colour ``[len(SEMANTIC_CLASSES), 3]`` (in [-1, 1]) of each layout surface (``LAYOUT_CLASSES``)
    in one frame ``rgb [3, H, W]`` labelled ``labels [H, W]``; NaN for other classes and for surfaces with
    fewer than ``PALETTE_PIXELS_MIN`` pixels."""
    palette = torch.full((len(SEMANTIC_CLASSES), 3), float("nan"), dtype=torch.float32, device=rgb.device)
    flat, lab = rgb.float().flatten(1), labels.flatten()
    for name in LAYOUT_CLASSES:
        where = lab == CLASS_ID[name]
        if int(where.sum()) >= PALETTE_PIXELS_MIN:
            palette[CLASS_ID[name]] = flat[:, where].mean(dim=1)
    return palette


def wall_top(depth: np.ndarray, labels: np.ndarray, pose: np.ndarray, intr: Intrinsics) -> float:
    """How high the walls go, from one frame's ``depth``/``labels [H, W]`` at ``pose``: the highest wall
    point, when the frame shows what is above the walls (sky or ceiling); inf when it does not (the walls
    may go higher than the view)."""
    wall = (labels == CLASS_ID["wall"]) & np.isfinite(depth)
    above = np.isin(labels, [CLASS_ID["sky"], CLASS_ID["ceiling"]]).sum() >= PALETTE_PIXELS_MIN
    if not above or wall.sum() < PALETTE_PIXELS_MIN:
        return float("inf")
    return float(unproject(depth, pose, intr, wall)[:, 2].max())


def layout_labels(
    poses: torch.Tensor, intr: Intrinsics, room: torch.Tensor, top: torch.Tensor, floor: torch.Tensor
) -> torch.Tensor:
    """The layout surface ``[B, H, W]`` (class ids) each pixel's ray from cameras ``poses [B, 4, 4]`` meets
    first in a room of floor z = 0, walls where ``room [B, H, W]`` (``reproject.room_depth``) puts them, up
    to ``top [B]`` metres: floor (where ``floor [B, H, W]``, ``reproject.floor_depth``, is nearer than
    the walls), wall, or above the walls ceiling (where the ray rises) and sky. Sky where the room is not
    known."""
    floor = floor.to(room.device, room.dtype)
    rays = camera_rays(intr, poses.device).to(poses.dtype)
    rise = torch.einsum("hwj,bj->bhw", rays, poses[:, 2, :3]).to(room.dtype)  # world z per unit camera z
    height = poses[:, 2, 3].to(room.dtype)[:, None, None] + room * rise
    labels = torch.full(room.shape, CLASS_ID["sky"], dtype=torch.long, device=room.device)
    labels[torch.isfinite(room) & (height <= top.to(room.dtype)[:, None, None])] = CLASS_ID["wall"]
    labels[torch.isfinite(room) & (height > top.to(room.dtype)[:, None, None])] = CLASS_ID["ceiling"]
    labels[floor <= room] = CLASS_ID["floor"]
    return labels


def fill_unseen(
    out: dict[str, torch.Tensor], covered: torch.Tensor, palettes: torch.Tensor, layout: torch.Tensor
) -> None:
    """Paint the pixels no memory covers (``covered [B, H, W]`` false) with the palette colour
    (``palettes [B, C, 3]``, from ``surface_palette``) of the layout surface ``layout [B, H, W]``
    (``layout_labels``) there, in place; above the walls, the ceiling's colour where the session has seen a
    ceiling, else the sky's. NaN palette rows leave the network's colour. Where nothing was seen the network
    can only guess, and its guess drifts to a washed-out grey over long walks; the session's own first view
    of its walls, floor and sky is a better guess, and the same on every visit."""
    planes = out["planes"]
    rgb = planes[:, 0:3]
    palettes = palettes.to(rgb.device, rgb.dtype).clone()
    ceiling, sky = palettes[:, CLASS_ID["ceiling"]], palettes[:, CLASS_ID["sky"]]
    palettes[:, CLASS_ID["ceiling"]] = torch.where(torch.isfinite(ceiling), ceiling, sky)
    b = torch.arange(len(layout), device=rgb.device)[:, None, None]
    colour = palettes[b, layout.to(rgb.device)]  # [B, H, W, 3]
    use = ~covered.to(rgb.device).bool() & torch.isfinite(colour).all(dim=-1)
    _paint(out, use, colour.permute(0, 3, 1, 2))
