import math

import numpy as np
import pytest
import torch

from world_model.model.checkpoint import load_weights
from world_model.model.data import TrajectoryStore, from_unit, to_unit
from world_model.model.train import TrainConfig, Trainer, train_config


def _config(tiny_dataset, tmp_path, steps):
    return TrainConfig(
        data_dir=str(tiny_dataset),
        out_dir=str(tmp_path / "run"),
        steps=steps,
        batch_size=2,
        widths=[8, 16, 16, 16],
        holdout_seeds=1,
        sample_every=2,
        checkpoint_every=1,
        log_every=1,
    )


def test_a_tiny_training_run_steps_writes_and_resumes(tiny_dataset, tmp_path):
    trainer = Trainer(_config(tiny_dataset, tmp_path, steps=2))
    examples = trainer.batch()
    losses = trainer.losses(examples, aux_weight=1.0)
    assert all(math.isfinite(float(v.detach())) for v in losses.values())
    assert {e.key[0] for e in examples} <= set(trainer.train_rows.tolist())  # held-out seed never trained on
    trainer.run()
    run = tmp_path / "run"
    assert (run / "weights.safetensors").is_file() and (run / "samples" / "step000002.png").is_file()
    assert any((run / "tb").iterdir())
    net, header = load_weights(run / "weights.safetensors")
    assert header["step"] == "2" and "dreamx-train" in header["command"]
    resumed = Trainer(_config(tiny_dataset, tmp_path, steps=3))
    assert resumed.step == 2
    resumed.run()
    assert load_weights(run / "weights.safetensors")[1]["step"] == "3"


def test_memories_follow_the_recorded_events(tiny_dataset):
    store = TrajectoryStore(tiny_dataset, progress=False)
    n = 0
    states = store.states(n)
    changed = [t for t in range(1, store.frames) if states[t] != states[t - 1]]  # lights, door, props
    recorded = [t for t in range(store.frames) if store.events[n, t]]
    assert changed and set(changed) <= set(recorded)
    ex = store.example(n, store.frames - 1, np.random.default_rng(0))
    assert ex.memories[0].time == store.frames - 2 and len(ex.memories) <= 4
    assert ex.state is states[-1]


def test_event_rows_are_drawn_just_after_an_event(tiny_dataset, tmp_path):
    from dataclasses import replace

    trainer = Trainer(replace(_config(tiny_dataset, tmp_path, steps=1), event_prob=1.0, batch_size=8))
    events = {(int(n), int(t)) for n, t in trainer.event_frames}
    assert events and all(n in trainer.train_rows for n, _ in events)  # never the held-out seed
    for e in trainer.batch():
        n, t = e.key
        assert any(n == en and 0 <= t - et < 8 for en, et in events), (n, t)


def test_validation_seeds_and_unknown_options_are_refused(tiny_dataset, tmp_path):
    store = TrajectoryStore(tiny_dataset, progress=False)
    store.seed = store.seed + 100_000
    with pytest.raises(ValueError, match="validation seeds"):
        Trainer(_config(tiny_dataset, tmp_path, 1), store)
    with pytest.raises(ValueError, match="unknown training option"):
        train_config({"stepz": 3})


def test_colour_bytes_round_trip_through_the_unit_range():
    rgb = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    rgb[0, 0, 0] = [0, 255, 128]
    unit = to_unit(rgb)
    assert unit.shape == (2, 3, 8, 8) and unit.min() >= -1 and unit.max() <= 1
    assert np.array_equal(from_unit(unit).numpy(), rgb)
    assert from_unit(torch.tensor([-3.0, 0.0, 3.0])[:, None, None]).flatten().tolist() == [0, 128, 255]


def test_a_resumed_run_is_the_run_it_would_have_been(tiny_dataset, tmp_path, monkeypatch):
    """Killed mid-way and resumed, training ends with the weights of an uninterrupted run, bit for bit: the
    checkpoint holds the random states that draw the batches."""
    from dataclasses import replace

    from safetensors.torch import load_file

    whole = replace(
        _config(tiny_dataset, tmp_path, steps=4), out_dir=str(tmp_path / "whole"), sample_every=100
    )
    Trainer(whole).run()
    cut = replace(whole, out_dir=str(tmp_path / "cut"))
    real_save = Trainer.save

    def dies_after_step_2(self, meta_extra=None):
        real_save(self, meta_extra)
        if self.step == 2:
            raise KeyboardInterrupt  # as a kill right after the checkpoint

    monkeypatch.setattr(Trainer, "save", dies_after_step_2)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cut).run()
    monkeypatch.setattr(Trainer, "save", real_save)
    torch.manual_seed(123)  # a fresh process: whatever torch's random state was
    resumed = Trainer(cut)
    assert resumed.step == 2
    resumed.run()
    a = load_file(str(tmp_path / "whole" / "weights.safetensors"))
    b = load_file(str(tmp_path / "cut" / "weights.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("patch", [1, 2])
def test_training_the_semantic_head_only_leaves_colour_and_depth_bit_for_bit(tiny_dataset, tmp_path, patch):
    from dataclasses import replace

    start = replace(_config(tiny_dataset, tmp_path, steps=3), patch=patch, out_dir=str(tmp_path / "start"))
    Trainer(replace(start, steps=1)).run()
    init = tmp_path / "start" / "weights.safetensors"
    cfg = replace(start, out_dir=str(tmp_path / "run"), init_weights=str(init), lr=0.01)
    trainer = Trainer(replace(cfg, train_only="semantic_head", semantic_balance=0.5))
    assert trainer.semantic_weights.max() > 2 * trainer.semantic_weights.min()  # rare classes weigh more
    trainer.run()
    before, after = (
        load_weights(init)[0].state_dict(),
        load_weights(tmp_path / "run" / "weights.safetensors")[0],
    )
    after = after.state_dict()
    assert [k for k in before if not torch.equal(before[k], after[k])] == ["head.weight", "head.bias"]
    rows = 4 * patch * patch  # colour and inverse depth
    assert torch.equal(before["head.weight"][:rows], after["head.weight"][:rows])
    assert not torch.equal(before["head.weight"][rows:], after["head.weight"][rows:])
    with pytest.raises(ValueError, match="train_only"):
        Trainer(replace(cfg, train_only="decoder"))
