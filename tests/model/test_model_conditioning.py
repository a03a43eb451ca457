import numpy as np
import torch

from world_model.model.conditioning import Warp, assemble, current_estimate, first_frame_inputs
from world_model.model.network import IN_CHANNELS, NEAREST_M


def _warp(b=2, h=4, w=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    feats = torch.rand(b, 5, h, w, generator=gen) * 2 - 1
    mask = torch.rand(b, h, w, generator=gen) > 0.3
    zbuf = torch.where(mask, torch.rand(b, h, w, generator=gen) * 4 + 0.1, torch.tensor(float("inf")))
    return Warp(feats * mask[:, None], zbuf, mask)


def test_assemble_lays_out_the_channels_the_network_documents():
    warp = _warp()
    hints = torch.rand(2, 6, 4, 5)
    x = assemble(warp, hints)
    assert x.shape == (2, IN_CHANNELS, 4, 5) and x.is_contiguous(memory_format=torch.channels_last)
    m = warp.mask.float()
    assert torch.equal(x[:, 0:3], warp.feats[:, 0:3]) and torch.equal(x[:, 5:7], warp.feats[:, 3:5])
    assert torch.allclose(x[:, 3], torch.where(warp.mask, NEAREST_M / warp.zbuf.clamp_min(NEAREST_M), 0.0))
    assert torch.equal(x[:, 4], m) and (x[:, 7] == 1).all() and (x[:, 11] == 0).all()
    assert torch.equal(x[:, 8:11], warp.feats[:, 0:3]) and torch.equal(x[:, 12:18], hints)
    estimate = torch.rand(2, 3, 4, 5)
    refine = assemble(warp, None, estimate, depth_known=torch.tensor([1.0, 0.0]))
    assert torch.equal(refine[:, 8:11], estimate) and (refine[:, 11] == 1).all()
    assert (refine[:, 12:] == 0).all()  # no hints
    assert (refine[0, 7] == 1).all() and (refine[1, 7] == 0).all()  # depth known per row
    assert torch.equal(refine[:, :7], x[:, :7])


def test_a_first_frame_is_its_colour_seen_with_the_lights_on_and_no_depth():
    rgb = torch.rand(1, 3, 4, 5) * 2 - 1
    x = first_frame_inputs(rgb)
    expected = np.zeros((IN_CHANNELS, 4, 5), np.float32)
    expected[0:3] = expected[8:11] = rgb[0].numpy()
    expected[4] = expected[5] = 1.0  # everything landed, seen with the lights on; depth unknown (7 = 0)
    assert np.array_equal(x[0].numpy(), expected)


def test_assemble_in_bfloat16_is_the_float32_input_rounded_once():
    warp, hints = _warp(), torch.rand(2, 6, 4, 5)
    x = assemble(warp, hints, dtype=torch.bfloat16)
    assert x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x, assemble(warp, hints).to(torch.bfloat16))
    assert torch.equal(current_estimate(warp, None), warp.feats[:, 0:3])  # what channels 8-10 hold
    estimate = torch.rand(2, 3, 4, 5)
    assert current_estimate(warp, estimate) is estimate


def _memory(t, rgb_value, x=0.0, door_open=False, door_rows=slice(0, 0)):
    from world_model.geometry import Intrinsics, pose_from_yaw_pitch
    from world_model.model.memory import MemoryEntry
    from world_model.model.reproject import view_points

    intr = Intrinsics.from_fov(16, 16, 70.0)
    pose = pose_from_yaw_pitch(np.array([x, 0.0, 1.0]), 0.0, 0.0)
    depth = np.full((16, 16), 3.0, np.float32)
    depth[:, 8:] *= 1.1 if t else 1.0  # the two memories disagree about the right half's depth by 10%
    door = torch.zeros(16, 16)
    door[door_rows] = 1.0
    rgb = torch.full((3, 16, 16), float(rgb_value))
    entry = MemoryEntry(
        rgb, torch.from_numpy(depth), door, pose, t, True, door_open, 0, view_points(depth, pose, intr)
    )
    return entry, intr


def test_a_surface_two_memories_disagree_about_comes_from_the_older_within_the_tolerance():
    from world_model.model.conditioning import warp_memories

    old, intr = _memory(0, -0.5)
    new, _ = _memory(9, 0.5, x=0.02)
    target = old.pose[None]
    tight = warp_memories([[new, old]], target, intr, "oldest", tolerance=0.05)
    wide = warp_memories([[new, old]], target, intr, "oldest", tolerance=0.3)
    # within 5% the older wins on the left half only; the newer's nearer-looking right half wins there
    assert (tight.feats[0, 0, 4:12, 2:6] == -0.5).all() and (tight.feats[0, 0, 4:12, 10:14] == -0.5).all()
    assert (wide.feats[0, 0, 4:12, 2:14] == -0.5).all()
    nearest = warp_memories([[new, old]], new.pose[None], intr, "nearest_view", tolerance=0.3)
    assert (nearest.feats[0, 0, 4:12, 2:14] == 0.5).all()  # the view taken at the target wins


def test_a_memory_that_saw_the_door_in_another_state_leaves_the_door_out():
    from world_model.model.conditioning import warp_memories

    seen, intr = _memory(0, 0.2, door_rows=slice(0, 8))  # the door fills the top half, seen closed
    closed = warp_memories([[seen]], seen.pose[None], intr, "oldest", door_open=[False])
    opened = warp_memories([[seen]], seen.pose[None], intr, "oldest", door_open=[True])
    assert closed.mask[0].all()
    assert not opened.mask[0, 1:7].any() and opened.mask[0, 9:].all()


def test_memories_of_the_current_world_state_come_before_older_ones():
    from world_model.model.conditioning import warp_memories

    lit, intr = _memory(0, 0.5)  # seen first, before the lights went off
    dark, _ = _memory(9, -0.5, x=0.02)
    dark.version, dark.lights = 1, False
    target = lit.pose[None]
    assert (warp_memories([[dark, lit]], target, intr, "oldest").feats[0, 0, 4:12, 2:6] == 0.5).all()
    now = warp_memories([[dark, lit]], target, intr, "oldest", tolerance=0.3, looks=[(False, False)])
    assert (now.feats[0, 0, 4:12, 2:14] == -0.5).all()  # the view of the world as it is now
