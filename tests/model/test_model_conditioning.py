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
