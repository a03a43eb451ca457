"""The Triton z-buffer kernel against the torch reference, run by Triton's interpreter on CPU."""

import importlib

import numpy as np
import pytest
import torch

from world_model.geometry import Intrinsics, pose_from_yaw_pitch
from world_model.model.reproject import splat

INTR = Intrinsics.from_fov(24, 24, 70.0)


@pytest.fixture(scope="module")
def interpreted():
    mp = pytest.MonkeyPatch()
    mp.setenv("TRITON_INTERPRET", "1")  # read when the kernels are decorated: (re)load the module under it
    import world_model.model.splat_triton as kernels

    yield importlib.reload(kernels)
    mp.undo()


@pytest.mark.parametrize("footprint", [1, 2])
@pytest.mark.parametrize("prefer", [False, True])
def test_triton_zbuffer_matches_the_torch_reference(interpreted, footprint, prefer):
    rng = np.random.default_rng(footprint + 2 * prefer)
    depth = torch.from_numpy(rng.uniform(0.5, 6.0, (3, 24, 24)).astype(np.float32))
    depth[0, :3] = float("inf")  # sky
    feats = torch.from_numpy(rng.random((3, 4, 24, 24)).astype(np.float32))
    src = torch.from_numpy(
        np.stack(
            [pose_from_yaw_pitch(np.array([0.2 * i, 0.1 * i, 1.0]), 0.1 * i, 0.02 * i) for i in range(3)]
        )
    )
    dst = torch.from_numpy(
        np.stack(
            [
                pose_from_yaw_pitch(np.array([0.3, -0.1, 1.0]), 0.15, 0.0),
                pose_from_yaw_pitch(np.array([0.0, 0.2, 1.0]), -0.2, 0.05),
            ]
        )
    )
    groups = torch.tensor([0, 1, 0])
    priority = torch.tensor([2, 0, 1]) if prefer else None
    ref = splat(feats, depth, src, dst, groups, 2, INTR, priority, footprint=footprint, use_triton=False)
    got = splat(feats, depth, src, dst, groups, 2, INTR, priority, footprint=footprint, use_triton=True)
    assert ref[2].sum() > 400  # the views overlap: most target pixels are filled
    assert (ref[2] == got[2]).float().mean() > 0.995
    both = ref[2] & got[2]
    assert (ref[0] == got[0]).all(dim=1)[both].float().mean() > 0.99
    assert torch.allclose(ref[1][both], got[1][both], rtol=1e-3)
