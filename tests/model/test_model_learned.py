import dataclasses

import numpy as np
import pytest
import torch

from world_model.backend_registry import make_backend
from world_model.events import parse_prompt
from world_model.geometry import pose_from_yaw_pitch
from world_model.model.collision import obstacle_points
from world_model.model.learned import LearnedConfig, LearnedWorldModel
from world_model.model.start_bank import StartBank
from world_model.semantics import CLASS_ID

from .helpers import straight_poses, turning_poses


@pytest.fixture(scope="module")
def model(tiny_weights):
    return LearnedWorldModel(LearnedConfig(weights=str(tiny_weights)))


def _run(model, seed=3, chunks=3):
    sid, first, _ = model.open(seed)
    out = [model.generate([sid], straight_poses(4, 0.05), [[]])[0] for _ in range(chunks)]
    model.close(sid)
    return first, out


def test_open_from_the_start_bank_and_generate_chunks(model):
    bank = StartBank.load()
    sid, first, info = model.open(3)
    assert np.array_equal(first.rgb[0], bank.images[bank.find(3), 0])
    assert info.seed == 3 and info.goal_poses.shape == (4, 4, 4) and info.objects
    (frames,) = model.generate([sid], straight_poses(4, 0.05), [[]])
    assert frames.rgb.shape == (4, 64, 64, 3) and frames.rgb.dtype == np.uint8
    assert frames.depth.shape == (4, 64, 64) and frames.depth.dtype == np.float32
    assert frames.semantic.shape == (4, 64, 64) and frames.semantic.max() < 10
    assert frames.poses.shape == (4, 4, 4)
    assert np.allclose(model.pose(sid), frames.poses[-1])


def test_same_calls_same_frames(tiny_weights, model):
    other = LearnedWorldModel(LearnedConfig(weights=str(tiny_weights)))
    a_first, a = _run(model)
    b_first, b = _run(other)
    assert np.array_equal(a_first.rgb, b_first.rgb)
    assert all(
        np.array_equal(x.rgb, y.rgb) and np.array_equal(x.depth, y.depth) for x, y in zip(a, b, strict=True)
    )


def test_a_fork_leaves_the_episode_untouched(model):
    _, expected = _run(model, chunks=2)
    sid, _, _ = model.open(3)
    model.generate([sid], straight_poses(4, 0.05), [[]])
    fork = model.fork(sid)
    for _ in range(3):
        model.generate([fork], turning_poses(4, 10.0), [parse_prompt("lights off and drop a red ball")])
    (second,) = model.generate([sid], straight_poses(4, 0.05), [[]])
    assert np.array_equal(second.rgb, expected[1].rgb)
    assert model._sessions[sid].state.lights_on and not model._sessions[fork].state.lights_on


def test_memory_is_bounded(tiny_weights):
    m = LearnedWorldModel(LearnedConfig(weights=str(tiny_weights), memory_capacity=4))
    sid, _, _ = m.open(5)
    for _ in range(12):
        m.generate([sid], turning_poses(4, 12.0), [[]])
    assert len(m._sessions[sid].memory.keyframes) <= 4


@pytest.mark.parametrize(
    "setting",
    [
        {"memory_k": 0},
        {"memory_capacity": -1},
        {"sampler_steps": 0},
        {"footprint": 3},
        {"threads": 0},
        {"near_k": -1},
        {"same_surface": -0.5},
        {"prefer_older": "newest"},
    ],
)
def test_settings_that_could_only_fail_later_are_refused_at_construction(tiny_weights, setting):
    """Each would have opened sessions and failed (or misbehaved) at the first ``generate``."""
    (name,) = setting
    with pytest.raises(ValueError, match=f"{name} must be"):
        LearnedWorldModel(LearnedConfig(weights=str(tiny_weights), **setting))


def test_a_memory_of_capacity_zero_keeps_the_latest_frame(tiny_weights):
    m = LearnedWorldModel(LearnedConfig(weights=str(tiny_weights), memory_capacity=0))
    sid, _, _ = m.open(5)
    (frames,) = m.generate([sid], turning_poses(3, 12.0), [[]])
    memory = m._sessions[sid].memory
    assert frames.rgb.shape == (3, 64, 64, 3) and not memory.keyframes and memory.latest.time == 3


def test_first_frame_and_bad_inputs(model, tiny_weights):
    image = np.full((64, 64, 3), 100, np.uint8)
    sid, first, info = model.open(first_frame=image)
    assert np.array_equal(first.rgb[0], image) and info.family == "image"
    with pytest.raises(ValueError, match=r"first_frame must be uint8 \[64, 64, 3\]"):
        model.open(first_frame=np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="relative_poses"):
        model.generate([sid], np.eye(4)[None], [[]])
    with pytest.raises(ValueError, match="once per call"):
        model.generate([sid, sid], np.tile(np.eye(4), (2, 1, 1, 1)), [[], []])
    assert model.pose(sid).tolist() == first.poses[0].tolist() and model._sessions[sid].time == 0  # untouched
    with pytest.raises(ValueError, match="trained at 64x64"):
        LearnedWorldModel(LearnedConfig(weights=str(tiny_weights), height=128, width=128))


def test_an_event_without_a_target_is_skipped_and_the_rest_applies(model):
    sid, _, _ = model.open(first_frame=np.full((64, 64, 3), 90, np.uint8))
    model._sessions[sid].semantic[:] = 1  # nothing but floor in view
    model.generate([sid], straight_poses(2), [parse_prompt("lights off and paint the nearest box red")])
    session = model._sessions[sid]
    assert not session.state.lights_on and not session.state.props


def test_a_push_moves_what_the_session_sees_and_its_memory_forgets_the_old_place(tiny_weights):
    model = LearnedWorldModel(LearnedConfig(weights=str(tiny_weights), find_objects=False))  # its labels
    sid, first, _ = model.open(first_frame=np.full((64, 64, 3), 90, np.uint8))
    session = model._sessions[sid]
    session.semantic[:] = CLASS_ID["floor"]
    session.semantic[28:36, 28:36] = CLASS_ID["ball"]  # the model saw a ball 2 m ahead ...
    session.depth[28:36, 28:36] = 2.0
    old = session.memory.latest.depth.clone()
    old[28:36, 28:36] = 2.0  # ... and remembers it there
    session.memory.latest.depth = old
    model.generate([sid], straight_poses(1), [parse_prompt("push the nearest ball")])
    (ball,), (gone,) = session.state.props, session.state.vacated
    assert ball.shape == "ball" and np.hypot(*(np.array(ball.center[:2]) - gone.center)) > 0.9
    kept = session.memory.keyframes[0]  # the opened frame, the only keyframe: its ball pixels are forgotten
    assert (kept.depth[28:36, 28:36] == 0).all() and (old == 0).sum() == 0


def test_the_camera_stays_inside_the_scene(tiny_weights):
    m = LearnedWorldModel(LearnedConfig(weights=str(tiny_weights)))
    sid, _, info = m.open(7)
    m._sessions[sid].depth[:] = 100.0  # even when it sees nothing ahead
    (frames,) = m.generate([sid], straight_poses(4, 5.0), [[]])
    x0, y0, x1, y1 = info.bounds
    assert np.all((frames.poses[:, 0, 3] > x0) & (frames.poses[:, 0, 3] < x1))
    assert np.all((frames.poses[:, 1, 3] > y0) & (frames.poses[:, 1, 3] < y1))


def test_a_move_into_a_wall_slides_as_the_engines_does(tiny_weights):
    m = LearnedWorldModel(LearnedConfig(weights=str(tiny_weights)))
    sid, _, info = m.open(7)
    s = m._sessions[sid]
    s.obstacles = ()
    x0, y0, x1, y1 = info.bounds
    start = pose_from_yaw_pitch(np.array([x0 + 0.3, (y0 + y1) / 2, 1.0]), 0.0, 0.0)
    s.pose = start
    target = start.copy()
    target[:2, 3] += [-0.2, 0.1]  # into the wall at x0 and along it
    (reached,) = m._reach([s], target[None])
    assert np.allclose(reached[:2, 3], start[:2, 3] + [0.0, 0.1])  # the engine's y alone, not clamped to x0
    target[:2, 3] = [x0 + 0.1, y0 + 0.1]  # into a corner: nothing of it is free
    (reached,) = m._reach([s], target[None])
    assert np.allclose(reached[:2, 3], start[:2, 3])


def test_the_camera_stops_short_of_an_object_it_has_seen(tiny_weights):
    """A box face 0.5 m ahead in the session's last frame (as if predicted) stops a walk at the first step
    that would come within ``OBSTACLE_RADIUS_M`` (0.35 m) of it; forks inherit what was seen."""
    m = LearnedWorldModel(LearnedConfig(weights=str(tiny_weights)))
    sid, first, _ = m.open(7)
    s = m._sessions[sid]
    box = np.full_like(s.semantic, CLASS_ID["box"])
    s.obstacles = (obstacle_points(np.full_like(s.depth, 0.5), box, s.pose, m.intr),)
    fork = m.fork(sid)
    for session in (sid, fork):
        (frames,) = m.generate([session], straight_poses(4, 0.1), [[]])
        travel = np.linalg.norm(frames.poses[:, :3, 3] - first.poses[0, :3, 3], axis=1)
        assert np.allclose(travel, 0.1)  # 0.1 m is allowed (0.4 m clear), 0.2 m is not (0.3 m clear)


def test_registered_as_the_learned_backend(tiny_weights):
    backend = make_backend("learned", weights=str(tiny_weights))
    assert backend.info().name == "learned" and len(backend.info().checkpoint) == 16


def test_device_option(tiny_weights, model):
    on_cpu = LearnedWorldModel(LearnedConfig(weights=str(tiny_weights), device="cpu"))
    assert on_cpu.info().extra["device"] == "cpu" and next(on_cpu.net.parameters()).device.type == "cpu"
    if not torch.cuda.is_available():  # auto falls back to the CPU, with the same frames
        assert model.device.type == "cpu"
        assert all(np.array_equal(x.rgb, y.rgb) for x, y in zip(_run(model)[1], _run(on_cpu)[1], strict=True))
        with pytest.raises(ValueError, match="no CUDA GPU"):
            LearnedWorldModel(LearnedConfig(weights=str(tiny_weights), device="cuda"))
    with pytest.raises(ValueError, match="device must be one of"):
        LearnedWorldModel(LearnedConfig(weights=str(tiny_weights), device="gpu"))


def test_memories_own_their_tensors(model):
    """A kept memory holds its own frame, not a view that pins the whole batch's output."""
    sids = [model.open(s)[0] for s in (3, 4)]
    model.generate(sids, np.stack([straight_poses(2, 0.05)[0]] * 2), [[], []])
    for sid in sids:
        for e in [model._sessions[sid].memory.latest, *model._sessions[sid].memory.keyframes]:
            own = sum(t.numel() * t.element_size() for t in (e.rgb, e.depth, e.door))
            for t in (e.rgb, e.depth, e.door):  # one frame's channels, not the batch's
                assert t.untyped_storage().nbytes() == own
        model.close(sid)


def test_a_memory_keeps_the_frame_the_caller_got(model):
    """The network's one pass gives both the frame returned and the memory kept: the returned colour is the
    kept colour in bytes, the kept depth the returned depth, the kept door plane the door pixels of the
    returned semantics; and a first frame is remembered as given."""
    sid, first, _ = model.open(5)
    given = model._sessions[sid].memory.latest
    assert np.array_equal(((given.rgb.permute(1, 2, 0) + 1) * 127.5).round().byte().numpy(), first.rgb[0])
    (frames,) = model.generate([sid], turning_poses(3, 10.0), [[]])
    kept = model._sessions[sid].memory.latest
    colour = ((kept.rgb.permute(1, 2, 0) + 1.0) * 127.5).round().clamp(0, 255).byte().numpy()
    assert np.array_equal(colour, frames.rgb[-1])
    assert np.array_equal(kept.depth.numpy(), frames.depth[-1])
    assert np.array_equal(kept.door.numpy(), (frames.semantic[-1] == CLASS_ID["door"]).astype(np.float32))
    model.close(sid)


def test_cpu_compile_option_matches_eager(tiny_weights, model, monkeypatch):
    """``cpu_compile``: the network and (where the C kernel cannot be built) the z-buffer run through
    ``torch.compile`` on the CPU, with the eager frames. (The cameras follow the given poses: a rounding
    difference may flip a random network's object label, and with it where a camera stops.)"""
    import world_model.model.learned as learned

    monkeypatch.setattr(learned, "native_available", lambda: False)
    # fp32: bf16 (auto's choice on CPUs with it) rounds compiled and eager passes apart beyond this check
    cfg = LearnedConfig(weights=str(tiny_weights), device="cpu", collide=False, precision="fp32")
    compiled = LearnedWorldModel(dataclasses.replace(cfg, cpu_compile=True))
    eager = LearnedWorldModel(cfg)
    for a, b in zip(_run(compiled, chunks=1)[1], _run(eager, chunks=1)[1], strict=True):
        assert np.abs(a.rgb.astype(int) - b.rgb).max() <= 2  # inductor fuses in another order
        assert np.allclose(a.depth, b.depth, rtol=1e-3)
    assert compiled._small.compiled is not None, "compiling failed and the eager network ran instead"
    assert compiled._zbuffer.compiled is not None, "compiling failed and the eager z-buffer ran instead"


def test_every_network_pass_has_one_input_layout_so_nothing_compiles_again(tiny_weights):
    """Opening a session (a first frame), plain steps and steps with props' hint planes all give the network
    inputs of the same shapes, strides and dtypes: the compiled kernels (CPU) or CUDA graph of a batch size
    serve them all, with no compile in the middle of a game when the first ball drops."""
    m = LearnedWorldModel(LearnedConfig(weights=str(tiny_weights), device="cpu"))
    layouts = []

    def recorded(*inputs, forward=m._forward):
        layouts.append(tuple(None if t is None else (t.shape, t.stride(), t.dtype) for t in inputs))
        return forward(*inputs)

    m._small = m._large = recorded
    sid = m.open(3)[0]
    m.generate([sid], straight_poses(2, 0.05), [[]])
    m.generate([sid], straight_poses(2, 0.05), [parse_prompt("drop a red ball")])
    assert m._sessions[sid].state.props and len(layouts) == 1 + 2 + 2
    assert len(set(layouts)) == 1


def test_large_cpu_batches_run_the_network_in_parts_with_the_same_frames(tiny_weights, monkeypatch):
    """Above ``CPU_NETWORK_BATCH`` sessions the CPU network runs in parts (cache-sized); every session
    gets the frames it gets when the whole batch runs at once. (Cameras follow the given poses, as in the
    other numeric comparisons; fp32, for bf16's rounding depends on the batch's kernels.)"""
    import world_model.model.learned as learned

    cfg = LearnedConfig(weights=str(tiny_weights), device="cpu", collide=False, precision="fp32")
    runs = {}
    for parts in (2, 64):
        monkeypatch.setattr(learned, "CPU_NETWORK_BATCH", parts)
        m = LearnedWorldModel(cfg)
        calls = []

        def counted(*inputs, calls=calls, forward=m._forward):
            calls.append(len(inputs[0]))
            return forward(*inputs)

        m._small = m._large = counted
        sids = [m.open(seed)[0] for seed in (1, 2, 3, 4, 5)]
        rel = np.repeat(turning_poses(2, 5.0), 5, axis=0)
        runs[parts] = (m.generate(sids, rel, [[] for _ in sids]), calls)
    (split, split_calls), (whole, whole_calls) = runs[2], runs[64]
    assert split_calls == [1] * 5 + [2, 2, 1] * 2 and whole_calls == [1] * 5 + [5] * 2
    for a, b in zip(split, whole, strict=True):
        assert np.abs(a.rgb.astype(int) - b.rgb).max() <= 1 and np.allclose(a.depth, b.depth, rtol=1e-4)


def test_an_open_door_shows_what_lies_beyond_its_doorway():
    """With the door open, the first frame differs from one with ``open_door`` off only where the camera
    looks out through the room's doorway (``SceneInfo.doorway``, banked), and there it shows the floor going
    on in its first-frame colour or the outside."""
    from world_model.model.compositing import BEYOND_ROOM_RGB
    from world_model.model.reproject import doorway_pixels, room_depth

    bank = StartBank.load()
    assert np.isfinite(bank.doorways).all()
    frames, through, shown = {}, None, None
    for rule in (True, False):
        # the shipped weights; no layout fill, which differs once the door is open without the doorway drawn
        m = LearnedWorldModel(LearnedConfig(open_door=rule, layout_fill=False, collide=False))
        sid, _, info = m.open(5)
        assert len(info.doorway) == 5 and info.to_dict()["doorway"] == list(info.doorway)
        x0, y0, x1, y1, _ = info.doorway
        eye = m.pose(sid)
        door = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        yaw = float(np.arctan2(*(door - eye[:2, 3])[::-1]))  # radians, from +x
        facing = pose_from_yaw_pitch(np.array([*(0.5 * eye[:2, 3] + 0.5 * door), eye[2, 3]]), yaw, 0.0)
        rel = (np.linalg.inv(eye) @ np.stack([facing] * 2))[None]
        (frames[rule],) = m.generate([sid], rel, [parse_prompt("open the door")])
        if rule:
            palette = m._sessions[sid].palette
            floor = tuple(((palette[CLASS_ID["floor"]] + 1) * 127.5).round().int().tolist())
            beyond = (round((BEYOND_ROOM_RGB + 1) * 127.5),) * 3 if info.family == "room" else None
            pose = torch.from_numpy(facing[None])
            room = room_depth(pose, m.intr, torch.tensor([info.bounds], dtype=torch.float64))
            through = doorway_pixels(pose, m.intr, room, torch.tensor([info.doorway]))[0].numpy()
    changed = np.any(frames[True].rgb[0] != frames[False].rgb[0], axis=-1)
    assert through.sum() > 50 and changed.any() and not changed[~through].any()
    shown = {tuple(int(c) for c in px) for px in frames[True].rgb[0][changed]}
    assert shown <= {floor, beyond}


def test_relocate_keeps_what_the_session_has_seen(tiny_weights):
    m = LearnedWorldModel(LearnedConfig(weights=str(tiny_weights)))
    sid, first, info = m.open(3)
    s = m._sessions[sid]
    s.obstacles = (np.array([[9.0, 9.0]] * 4),)  # an object the session saw on its way
    m.generate([sid], turning_poses(4, 0.3), [[]])
    kept, time = len(s.memory.keyframes), s.time
    there = pose_from_yaw_pitch(info.start_pose[:3, 3] + [0.4, 0.3, 0.0], 1.0, 0.0)
    same, frames, _ = m.relocate(sid, 3, there)
    assert same == sid and np.allclose(m.pose(sid), there) and s.time == time + 1
    assert len(s.memory.keyframes) >= kept and any(np.array_equal(p, [[9.0, 9.0]] * 4) for p in s.obstacles)
    fresh_sid, fresh, _ = m.open(3, start_pose=there)  # the frame there is the scene's own view, as opened
    assert np.array_equal(frames.rgb, fresh.rgb)
    with pytest.raises(ValueError, match="in scene 3"):
        m.relocate(sid, 4, there)
    m.generate([sid], straight_poses(1), [parse_prompt("lights off")])
    _, dark, _ = m.relocate(sid, 3, m._sessions[fresh_sid].pose)  # once events changed the world: generated
    assert not np.array_equal(dark.rgb, fresh.rgb) and not s.state.lights_on
