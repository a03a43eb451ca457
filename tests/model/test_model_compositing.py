import numpy as np
import pytest
import torch

from world_model.events import parse_prompt
from world_model.geometry import Intrinsics, pose_from_yaw_pitch
from world_model.model.compositing import composite_props
from world_model.model.data import from_unit
from world_model.model.reproject import floor_depth
from world_model.model.world_state import SHADE, WorldState
from world_model.semantics import CLASS_ID, COLORS

INTR = Intrinsics.from_fov(64, 64, 70.0)
POSE = pose_from_yaw_pitch(np.array([0.0, 0.0, 1.0]), 0.0, 0.0)
GREY = round((1 - 0.2) * 127.5)  # the scene's colour bytes


def _outputs(depth_m: float, labels: int = CLASS_ID["floor"]) -> dict[str, torch.Tensor]:
    planes = torch.zeros(1, 5, 64, 64)
    planes[:, 0:3] = -0.2  # a grey scene
    planes[:, 3] = depth_m
    lab = torch.full((1, 64, 64), labels, dtype=torch.uint8)
    return {"planes": planes, "labels": lab, "colour": from_unit(planes[:, 0:3])}


def _hints(prompt: str, semantic=None, depth=None) -> torch.Tensor:
    semantic = np.full((64, 64), CLASS_ID["floor"], np.uint8) if semantic is None else semantic
    depth = np.full((64, 64), 5.0, np.float32) if depth is None else depth
    state = WorldState()
    for ev in parse_prompt(prompt):
        state = state.apply(ev, POSE, depth, semantic, INTR)
    return torch.from_numpy(state.hints(POSE[None], INTR))


def test_a_dropped_ball_shows_in_its_colour_at_its_depth_where_nothing_nearer_hides_it():
    hints = _hints("drop a red ball")
    ball = hints[0, 3] > 0
    out = _outputs(5.0)  # the floor and wall behind the ball
    composite_props(out, hints, torch.tensor([True]))
    red = np.round((np.array(COLORS["red"]) * SHADE[True]) * 255)
    assert np.allclose(out["colour"][0][ball].float().mean(0).numpy(), red, atol=1)
    assert (out["colour"][0][~ball] == GREY).all()  # nothing else changes
    assert out["planes"][0, 3][ball].mean() == pytest.approx(1.5 * np.sqrt(1 + 0.85**2 / 1.5**2), rel=0.2)
    hidden = _outputs(0.8)  # a wall between the camera and the ball
    composite_props(hidden, hints, torch.tensor([True]))
    assert (hidden["colour"][0][ball] == GREY).all()


def test_props_are_dark_with_the_lights_off():
    hints = _hints("drop a blue box")
    box = hints[0, 3] > 0
    lit, dark = _outputs(5.0), _outputs(5.0)
    composite_props(lit, hints, torch.tensor([True]))
    composite_props(dark, hints, torch.tensor([False]))
    assert dark["colour"][0][box].float().mean() < 0.1 * lit["colour"][0][box].float().mean()


def test_paint_recolours_only_the_object_pixels_under_it():
    semantic = np.full((64, 64), CLASS_ID["floor"], np.uint8)
    depth = np.full((64, 64), 5.0, np.float32)
    semantic[28:36, 28:36], depth[28:36, 28:36] = CLASS_ID["box"], 2.0
    hints = _hints("paint the nearest box green", semantic, depth)
    out = _outputs(5.0)
    out["labels"][0] = torch.from_numpy(semantic)
    composite_props(out, hints, torch.tensor([True]))
    green = np.round(np.array(COLORS["green"]) * 255)
    box_under_paint = (hints[0, 4] > 0).numpy() & (semantic == CLASS_ID["box"])
    assert box_under_paint.sum() > 20
    painted = out["colour"][0][torch.from_numpy(box_under_paint)].float()
    assert np.allclose(painted.numpy(), green, atol=1)
    floor_under_paint = (hints[0, 4] > 0).numpy() & (semantic == CLASS_ID["floor"])
    assert floor_under_paint.any()
    assert (out["colour"][0][torch.from_numpy(floor_under_paint)] == GREY).all()


def test_covered_pixels_keep_the_warped_memory_depth_and_the_sky_stays_sky():
    from world_model.model.compositing import keep_warped_depth
    from world_model.model.conditioning import SKY_M, Warp

    out = _outputs(5.0)
    zbuf = torch.full((1, 64, 64), float("inf"))
    zbuf[0, :, :20] = 2.5
    zbuf[0, :, 20:40] = SKY_M * 1.001  # the far plane the sky is warped as
    mask = torch.isfinite(zbuf)
    keep_warped_depth(out, Warp(torch.zeros(1, 5, 64, 64), zbuf, mask))
    depth = out["planes"][0, 3]
    assert (
        (depth[:, :20] == 2.5).all() and torch.isinf(depth[:, 20:40]).all() and (depth[:, 40:] == 5.0).all()
    )


def test_depth_is_scaled_to_the_floor_whose_depth_the_camera_height_fixes():
    from world_model.model.compositing import ground_depth
    from world_model.model.reproject import floor_depth

    pose = pose_from_yaw_pitch(np.array([0.0, 0.0, 1.0]), 0.0, np.radians(-20.0))  # looking down a little
    plane = floor_depth(torch.from_numpy(pose[None]), INTR)[0]
    rows = torch.arange(64)[:, None].expand(64, 64)
    assert torch.isinf(plane[rows < 10]).all()  # above the horizon: no floor
    v = 63
    ray_down = (v + 0.5 - INTR.cy) / INTR.fy  # camera y per unit z at the bottom row
    pitch = np.radians(20.0)
    expected = 1.0 / (np.sin(pitch) + ray_down * np.cos(pitch))
    assert float(plane[v, 32]) == pytest.approx(expected, rel=1e-3)
    out = _outputs(1.0)
    floor = torch.isfinite(plane) & (plane < 20.0)
    truth = torch.where(floor, plane, torch.full_like(plane, 4.0)).float()
    out["planes"][0, 3] = truth * 0.6  # the network's guess: the right shape, 40% too near
    out["labels"][0] = torch.where(floor, CLASS_ID["floor"], CLASS_ID["wall"]).to(torch.uint8)
    ground_depth(out, torch.from_numpy(pose[None]), INTR)
    assert torch.allclose(out["planes"][0, 3], truth, rtol=1e-4)
    few = _outputs(2.0, CLASS_ID["wall"])  # no floor in view: nothing to go by, the depth is left alone
    ground_depth(few, torch.from_numpy(pose[None]), INTR)
    assert (few["planes"][0, 3] == 2.0).all()


def test_room_depth_is_where_each_ray_meets_the_nearest_wall_of_the_footprint():
    from world_model.model.reproject import room_depth

    bounds = torch.tensor([[0.0, 0.0, 4.0, 3.0]], dtype=torch.float64)
    pose = pose_from_yaw_pitch(np.array([1.0, 1.5, 1.0]), 0.0, 0.0)
    depth = room_depth(torch.from_numpy(pose[None]), INTR, bounds)[0]
    forward = pose[:2, 2]  # the optical axis; the centre pixels look (almost) along it
    along = [
        (4.0 - 1.0) / forward[0] if forward[0] > 1e-9 else np.inf,
        (3.0 - 1.5) / forward[1] if forward[1] > 1e-9 else np.inf,
    ]
    along += [
        (0.0 - 1.0) / forward[0] if forward[0] < -1e-9 else np.inf,
        (0.0 - 1.5) / forward[1] if forward[1] < -1e-9 else np.inf,
    ]
    assert float(depth[31:33, 31:33].mean()) == pytest.approx(min(along), rel=0.03)
    assert torch.isfinite(depth).all() and (depth > 0).all()
    outside = pose_from_yaw_pitch(np.array([5.0, 1.5, 1.0]), 0.0, 0.0)  # no room around this camera
    assert torch.isinf(room_depth(torch.from_numpy(outside[None]), INTR, bounds)).all()
    unbounded = torch.full((1, 4), float("inf"), dtype=torch.float64) * torch.tensor([-1, -1, 1, 1])
    assert torch.isinf(room_depth(torch.from_numpy(pose[None]), INTR, unbounded)).all()


def test_wall_pixels_take_the_walls_depth_and_nothing_in_the_room_lies_beyond_them():
    from world_model.model.compositing import wall_depth

    room = torch.full((1, 64, 64), 3.0)
    room[:, :, 32:] = float("inf")  # no room known on the right half: the network's depth stays
    labels = torch.full((1, 64, 64), CLASS_ID["wall"], dtype=torch.uint8)
    labels[:, 40:] = CLASS_ID["ball"]
    labels[:, :8] = CLASS_ID["door"]
    out = _outputs(1.0)
    out["labels"] = labels
    out["planes"][:, 3, 40:52] = 7.0  # an object "behind" the wall: pulled in to it
    wall_depth(out, room)
    depth = out["planes"][0, 3]
    assert (depth[8:40, :32] == 3.0).all()  # wall pixels: the wall's depth, whatever the network said
    assert (depth[40:52, :32] == 3.0).all() and (depth[52:, :32] == 1.0).all()  # objects: at most the wall's
    assert (depth[:8, :32] == 1.0).all()  # the door (open, it lies beyond the wall) keeps the network's
    assert (depth[:, 32:][labels[0, :, 32:] != CLASS_ID["ball"]] == 1.0).all()
    assert (depth[40:52, 32:] == 7.0).all()


def _room_camera(top: float):
    """A level camera 1 m above the floor of a 4 x 3 m room, at (1, 1.5), yaw 0."""
    from world_model.model.reproject import room_depth

    pose = pose_from_yaw_pitch(np.array([1.0, 1.5, 1.0]), 0.0, 0.0)
    bounds = torch.tensor([[0.0, 0.0, 4.0, 3.0]], dtype=torch.float64)
    room = room_depth(torch.from_numpy(pose[None]), INTR, bounds)
    return torch.from_numpy(pose[None]), room, torch.tensor([top], dtype=torch.float64)


def test_layout_labels_say_which_surface_each_ray_meets_first():
    from world_model.model.compositing import layout_labels

    poses, room, top = _room_camera(1.5)
    labels = layout_labels(poses, INTR, room, top, floor_depth(poses, INTR))[0]
    column = labels[:, 32].tolist()
    # top rows rise above the 1.5 m walls (ceiling), the middle meets the wall, the bottom the floor
    assert (
        column[0] == CLASS_ID["ceiling"]
        and column[32] == CLASS_ID["wall"]
        and column[-1] == CLASS_ID["floor"]
    )
    assert column == sorted(column, key=[CLASS_ID["ceiling"], CLASS_ID["wall"], CLASS_ID["floor"]].index)
    unknown = torch.tensor([np.inf], dtype=torch.float64)
    endless = layout_labels(poses, INTR, room, unknown, floor_depth(poses, INTR))[0]
    assert not (endless == CLASS_ID["ceiling"]).any()  # walls of unknown height: no ceiling drawn
    nowhere = layout_labels(poses, INTR, torch.full_like(room, np.inf), top, floor_depth(poses, INTR))[0]
    assert set(nowhere.unique().tolist()) <= {CLASS_ID["sky"], CLASS_ID["floor"]}


def test_unseen_pixels_take_the_colour_of_their_surface_and_seen_ones_stay():
    from world_model.model.compositing import fill_unseen, layout_labels, surface_palette

    first = torch.zeros(3, 64, 64)
    first_labels = torch.full((64, 64), CLASS_ID["wall"], dtype=torch.uint8)
    first_labels[40:] = CLASS_ID["floor"]
    first[:, :40] = torch.tensor([0.5, -0.5, 0.0])[:, None, None]
    first[:, 40:] = torch.tensor([-0.8, 0.2, 0.4])[:, None, None]
    palette = surface_palette(first, first_labels)
    assert torch.allclose(palette[CLASS_ID["wall"]], torch.tensor([0.5, -0.5, 0.0]))
    assert torch.isnan(palette[CLASS_ID["sky"]]).all() and torch.isnan(palette[CLASS_ID["ball"]]).all()
    poses, room, top = _room_camera(1.5)
    layout = layout_labels(poses, INTR, room, top, floor_depth(poses, INTR))
    out = _outputs(2.0)
    covered = torch.zeros(1, 64, 64, dtype=torch.bool)
    covered[:, :, :8] = True  # memory covers the left strip
    fill_unseen(out, covered, palette[None], layout)
    rgb = out["planes"][0, 0:3]
    assert (rgb[:, :, :8] == -0.2).all()  # covered: the network's colour
    wall, floor = layout[0] == CLASS_ID["wall"], layout[0] == CLASS_ID["floor"]
    wall[:, :8], floor[:, :8] = False, False
    assert torch.allclose(rgb[:, wall], torch.tensor([0.5, -0.5, 0.0])[:, None])
    assert torch.allclose(rgb[:, floor], torch.tensor([-0.8, 0.2, 0.4])[:, None])
    above = layout[0] == CLASS_ID["ceiling"]
    assert above.any() and (rgb[:, above] == -0.2).all()  # neither ceiling nor sky seen: left alone
    assert torch.equal(out["colour"][0], from_unit(out["planes"][:, 0:3])[0])


def test_the_walls_top_is_known_only_when_the_view_shows_what_is_above_them():
    from world_model.model.compositing import wall_top

    pose = pose_from_yaw_pitch(np.array([1.0, 1.5, 1.0]), 0.0, 0.0)
    depth = np.full((64, 64), 3.0, np.float32)
    labels = np.full((64, 64), CLASS_ID["wall"], np.uint8)
    assert wall_top(depth, labels, pose, INTR) == np.inf
    labels[:20] = CLASS_ID["sky"]
    highest = 1.0 + 3.0 * (INTR.cy - 20.5) / INTR.fy  # the top wall row, 3 m away, camera 1 m up
    assert wall_top(depth, labels, pose, INTR) == pytest.approx(highest, rel=1e-3)


def _door_camera():
    """The room camera of ``_room_camera`` and a doorway (1 m wide, 2.1 m high) where its central ray
    leaves the room."""
    from world_model.model.reproject import doorway_pixels

    poses, room, _ = _room_camera(1.5)
    centre = poses[0, :2, 3] + float(room[0, 31:33, 31:33].mean()) * poses[0, :2, 2]
    wall_x = abs(float(centre[0]) - 4.0) < 1e-6  # the wall the camera faces: x = 4 or y = 3
    half = torch.tensor([0.0, 0.5] if wall_x else [0.5, 0.0], dtype=torch.float64)
    doorway = torch.cat([centre - half, centre + half, torch.tensor([2.1], dtype=torch.float64)])[None]
    return poses, room, doorway, doorway_pixels(poses, INTR, room, doorway)


def test_the_doorway_is_where_rays_leave_the_room_through_it():
    from world_model.model.reproject import doorway_pixels

    poses, room, doorway, through = _door_camera()
    assert through[0, 20:44, 31:33].all()  # the centre column, up and down the door
    assert not through[0, :, :2].any() and not through[0, :, -2:].any()  # the walls beside it
    low = doorway.clone()
    low[0, 4] = 0.5  # a doorway 0.5 m high: the camera at 1 m sees it only below its eye level
    below = doorway_pixels(poses, INTR, room, low)[0]
    assert below[40:, 32].any() and not below[:32, 32].any()
    nowhere = torch.full_like(doorway, float("nan"))
    assert not doorway_pixels(poses, INTR, room, nowhere).any()


def test_the_ground_ends_a_few_room_sizes_past_the_walls():
    from world_model.model.reproject import GROUND_MARGIN, ground_reach

    poses, _, _ = _room_camera(1.5)
    floor = floor_depth(poses, INTR)
    bounds = torch.tensor([[0.0, 0.0, 4.0, 3.0]], dtype=torch.float64)
    reach = ground_reach(poses, INTR, floor, bounds)[0]
    near = torch.isfinite(floor[0]) & (floor[0] < 4.0)
    far = torch.isfinite(floor[0]) & (floor[0] > (1 + 2 * GROUND_MARGIN) * 5.0)  # past the far edge
    assert reach[near].all() and far.any() and not reach[far].any()
    assert not reach[~torch.isfinite(floor[0])].any()  # rays that never go down meet no ground


def test_an_open_doorway_shows_the_floor_going_on_and_the_outside_above_it():
    from world_model.model.compositing import open_doorway
    from world_model.model.conditioning import SKY_M
    from world_model.model.reproject import ground_reach

    poses, room, _, through = _door_camera()
    out = _outputs(0.0, CLASS_ID["door"])
    out["planes"][:, 3] = room.float()  # the closed door, in the wall
    out["planes"][:, 3, 44:, 28:36] = 1.0  # something in the room in front of the doorway's foot
    floor = floor_depth(poses, INTR)
    bounds = torch.tensor([[0.0, 0.0, 4.0, 3.0]], dtype=torch.float64)
    ground = ground_reach(poses, INTR, floor, bounds)
    floor_rgb, beyond_rgb = torch.tensor([[0.6, 0.2, -0.4]]), torch.tensor([[-0.4, -0.4, -0.4]])
    open_doorway(out, through, room, floor, ground, floor_rgb, beyond_rgb)
    rgb, depth, labels = out["planes"][0, 0:3], out["planes"][0, 3], out["labels"][0]
    shown = through[0].clone()
    shown[44:, 28:36] = False
    on_floor = shown & (floor[0] > room[0]) & ground[0]
    beyond = shown & ~on_floor
    assert on_floor.any() and beyond.any()
    assert (
        torch.allclose(rgb[:, on_floor], floor_rgb[0][:, None])
        and (labels[on_floor] == CLASS_ID["floor"]).all()
    )
    assert torch.allclose(depth[on_floor], floor[0][on_floor].float())
    assert torch.allclose(rgb[:, beyond], beyond_rgb[0][:, None]) and (depth[beyond] == SKY_M).all()
    assert (labels[beyond] == CLASS_ID["sky"]).all()
    kept = ~shown
    assert (rgb[:, kept] == -0.2).all() and (
        labels[kept] == CLASS_ID["door"]
    ).all()  # the rest, and what hides it
    assert torch.equal(out["colour"][0], from_unit(out["planes"][:, 0:3])[0])
    untouched = _outputs(0.0, CLASS_ID["door"])
    untouched["planes"][:, 3] = room.float()
    nan = torch.full((1, 3), float("nan"))
    open_doorway(untouched, through, room, floor, ground, nan, nan)  # colours not known: nothing drawn
    assert (untouched["planes"][0, 0:3] == -0.2).all()


def test_the_open_door_turns_outwards_on_its_hinge_and_shows_through_its_doorway():
    from world_model.model.compositing import draw_open_door, open_doorway
    from world_model.model.reproject import ground_reach, open_door_depth
    from world_model.model.splat_rules import camera_rays

    poses, room, doorway, through = _door_camera()
    bounds = torch.tensor([[0.0, 0.0, 4.0, 3.0]], dtype=torch.float64)
    panel = open_door_depth(poses, INTR, doorway, bounds)[0]
    hit = torch.isfinite(panel)
    assert hit.any()
    world = torch.einsum("hwj,ij->hwi", camera_rays(INTR).double(), poses[0, :3, :3]) * panel[..., None]
    points = (poses[0, :3, 3] + world)[hit]
    hinge, end = doorway[0, 0:2], doorway[0, 2:4]
    u = (end - hinge) / (end - hinge).norm()
    assert torch.allclose(
        (points[:, :2] - hinge) @ u, torch.zeros(len(points), dtype=torch.float64), atol=1e-6
    )
    outward = points[:, :2] - hinge
    inside = (points[:, 0] > 0) & (points[:, 0] < 4) & (points[:, 1] > 0) & (points[:, 1] < 3)
    assert not inside.any() and (outward.norm(dim=1) <= 1.0 + 1e-6).all()  # outside, one door width long
    assert (points[:, 2] >= 0).all() and (points[:, 2] <= 2.1 + 1e-6).all()
    out = _outputs(0.0, CLASS_ID["wall"])
    out["planes"][:, 3] = room.float()
    door_rgb = torch.tensor([[0.1, 0.5, -0.7]])
    draw_open_door(out, panel[None], door_rgb)  # the door still in its wall: the walls hide the panel
    assert (out["planes"][0, 0:3] == -0.2).all()
    floor = floor_depth(poses, INTR)
    nan = torch.full((1, 3), float("nan"))
    beyond = torch.tensor([[-0.4, -0.4, -0.4]])
    open_doorway(out, through, room, floor, ground_reach(poses, INTR, floor, bounds), nan, beyond)
    draw_open_door(out, panel[None], door_rgb)
    drawn = (out["planes"][0, 0:3] == door_rgb[0][:, None, None]).all(dim=0)
    assert drawn.any() and not drawn[~through[0]].any()  # seen through the doorway only
    assert (out["labels"][0][drawn] == CLASS_ID["door"]).all()
    assert torch.allclose(out["planes"][0, 3][drawn], panel[drawn].float())


def test_the_closed_doors_colour_is_read_where_the_frame_shows_the_doorway():
    from world_model.model.compositing import door_colour

    _, room, _, through = _door_camera()
    rgb = torch.zeros(3, 64, 64)
    rgb[:, through[0]] = torch.tensor([0.3, -0.1, 0.2])[:, None]
    depth = room[0].float().clone()
    assert torch.allclose(door_colour(rgb, depth, through[0], room[0]), torch.tensor([0.3, -0.1, 0.2]))
    hidden = torch.full_like(depth, 0.5)  # something in front of the whole view: the door is not seen
    assert torch.isnan(door_colour(rgb, hidden, through[0], room[0])).all()
