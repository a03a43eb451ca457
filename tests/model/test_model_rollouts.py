import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from world_model.events import EventRecord
from world_model.model.checkpoint import load_weights
from world_model.model.data import TrajectoryStore
from world_model.model.learned import LearnedConfig, LearnedWorldModel
from world_model.model.network import WorldNet
from world_model.model.rollouts import SelfRollouts
from world_model.model.train import TrainConfig, Trainer


def _step(rollouts: SelfRollouts, net: WorldNet) -> tuple[np.ndarray, np.ndarray]:
    x, state, (n, t) = rollouts.inputs()
    with torch.no_grad():
        out = net(x, state, torch.zeros(len(x)))
    rollouts.commit(out)
    return n, t


def test_a_rollout_remembers_what_generation_would_make(tiny_dataset, tiny_weights):
    """The rollout rows condition the network and remember its frames by generation's own code path: the
    frames a rollout puts into memory are those ``generate`` makes from the same first frame and cameras."""
    store = TrajectoryStore(tiny_dataset, progress=False)
    net, header = load_weights(tiny_weights)
    net.eval()
    rollouts = SelfRollouts(store, np.arange(len(store)), 1, net, np.random.default_rng(0), LearnedConfig())
    visited = [_step(rollouts, net) for _ in range(3)]
    (n0, t0), walk = visited[0], rollouts.walks[0]
    n, start = int(n0[0]), int(t0[0]) - 1
    assert [(int(a[0]), int(b[0])) for a, b in visited] == [(n, start + 1), (n, start + 2), (n, start + 3)]
    assert walk.frame == start + 3
    mine = rollouts.model._sessions[walk.session]

    # the rollouts run in fp32 (training's precision), so generation here does too: precision "auto" is
    # bf16 on a CPU with native bf16, whose rounding would part the two
    generation = replace(LearnedConfig(), collide=False, precision="fp32")
    model = LearnedWorldModel(generation, network=(net, header))
    poses = store.poses[n].astype(np.float64)
    sid, _, _ = model.open(first_frame=store.rgb[n, start], start_pose=poses[start])
    for t in range(
        start + 1, start + 4
    ):  # frame by frame, with the trajectory's events where the rollout had them
        events = [EventRecord.from_dict(d) for d in json.loads(str(store.events[n, t]) or "[]")]
        rel = np.linalg.inv(model.pose(sid)) @ poses[t]
        frames = model.generate([sid], rel[None, None], [events])[0]
    theirs = model._sessions[sid]
    assert mine.time == theirs.time == 3
    assert torch.allclose(mine.memory.latest.rgb, theirs.memory.latest.rgb, atol=1e-5)
    assert np.allclose(mine.depth, frames.depth[-1], rtol=1e-5)


def test_rollouts_restart_at_the_end_of_a_trajectory(tiny_dataset, tiny_weights):
    store = TrajectoryStore(tiny_dataset, progress=False)
    net, _ = load_weights(tiny_weights)
    rows = np.array([0])
    rollouts = SelfRollouts(store, rows, 2, net, np.random.default_rng(1))
    sessions = set()
    for _ in range(store.frames + 2):
        n, t = _step(rollouts, net)
        assert set(n.tolist()) == {0} and (t >= 1).all() and (t < store.frames).all()
        sessions |= {w.session for w in rollouts.walks}
    assert len(sessions) > 2  # walks that reached the last frame were closed and opened anew
    assert len(rollouts.model._sessions) == 2


def test_training_with_rollout_rows_and_initial_weights(tiny_dataset, tiny_weights, tmp_path):
    cfg = TrainConfig(
        data_dir=str(tiny_dataset),
        out_dir=str(tmp_path / "run"),
        steps=2,
        batch_size=2,
        widths=[8, 16, 16, 16],
        holdout_seeds=1,
        rollout_rows=2,
        init_weights=str(tiny_weights),
        warp_rules="generation",
    )
    trainer = Trainer(cfg)
    start = load_weights(tiny_weights)[0].state_dict()
    assert all(torch.equal(v, start[k]) for k, v in trainer.net.state_dict().items())
    losses = trainer.losses(trainer.batch(), aux_weight=1.0)
    assert {"rollout_rgb_l1", "rollout_inv_depth_l1"} <= set(losses)
    assert all(np.isfinite(float(v.detach())) for v in losses.values())
    walks = trainer.rollouts.walks
    assert all(w.trajectory in trainer.train_rows for w in walks)  # never the held-out seed
    frames = [w.frame for w in walks]
    trainer.losses(trainer.batch(), aux_weight=1.0)
    assert [w.frame for w in walks] == [f + 1 for f in frames]  # each step, one frame further


def test_a_floor_network_starts_from_one_without_it_computing_the_same(tiny_widths):
    from world_model.model.network import IN_CHANNELS
    from world_model.model.train import start_from

    torch.manual_seed(0)
    plain, floor = WorldNet(tiny_widths), WorldNet(tiny_widths, floor=True)
    start_from(floor, plain)
    x = torch.randn(2, IN_CHANNELS, 64, 64)
    state, step = torch.zeros(2, 2), torch.zeros(2)
    with torch.no_grad():
        a = plain(x, state, step)
        b = floor(torch.cat([x, torch.rand(2, 1, 64, 64)], dim=1), state, step)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    floor.stem.weight.data[:, -1] = 1.0  # the channel is read once trained
    with torch.no_grad():
        c = floor(torch.cat([x, torch.rand(2, 1, 64, 64)], dim=1), state, step)
    assert not torch.allclose(a["inv_depth"], c["inv_depth"], atol=1e-3)
    with pytest.raises(ValueError, match="cannot start"):
        start_from(plain, floor)


def test_a_floor_network_generates_with_the_floor_of_its_cameras(tiny_dataset, tiny_widths, tmp_path):
    """Weights with the floor channel load (the header says so) and generate; the channel is the floor
    plane's inverse depth along each ray of the target camera."""
    from world_model.model.checkpoint import save_weights
    from world_model.model.network import inverse_depth
    from world_model.model.reproject import floor_depth

    torch.manual_seed(0)
    path = tmp_path / "floor.safetensors"
    save_weights(path, WorldNet(tiny_widths, floor=True), {"step": 0, "height": 64, "width": 64})
    store = TrajectoryStore(tiny_dataset, progress=False)
    model = LearnedWorldModel(LearnedConfig(weights=str(path), collide=False))
    assert model.net.floor and model.net.stem.in_channels == 19
    poses = store.poses[0].astype(np.float64)
    sid, _, _ = model.open(first_frame=store.rgb[0, 0], start_pose=poses[0])
    step = model.next_inputs([sid], poses[1:2])
    x = step.inputs()
    assert x.shape[1] == 19
    expected = inverse_depth(floor_depth(torch.from_numpy(poses[1:2]), model.intr).float())
    assert torch.allclose(x[:, 18], expected) and (x[:, 18, -1] > 0).all() and (x[:, 18, 0] == 0).all()
    frames = model.generate([sid], (np.linalg.inv(poses[0]) @ poses[1:3])[None], [[]])[0]
    assert frames.rgb.shape == (2, 64, 64, 3) and np.isfinite(frames.depth).any()
