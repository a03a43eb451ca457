import pytest

from world_model.model.checkpoint import save_weights
from world_model.model.network import WorldNet

TINY = (8, 16, 16, 16)


@pytest.fixture(scope="session")
def tiny_widths():
    return TINY


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """Random weights of a tiny WorldNet: fast, for tests of shapes, determinism and plumbing."""
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(path, WorldNet(TINY), {"step": 0, "height": 64, "width": 64, "vfov_deg": 70.0})
    return path


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """Two training seeds, one trajectory each, 12 frames, with events on every trajectory."""
    from world_model.engine.generate import GenerateConfig, generate

    out = tmp_path_factory.mktemp("data")
    generate(
        GenerateConfig(
            output_dir=str(out),
            seed_start=0,
            seed_stop=2,
            trajectories_per_seed=1,
            frames=12,
            kinds={"random": 1.0},
            event_probability=1.0,
            seeds_per_shard=2,
            workers=1,
        )
    )
    return out
