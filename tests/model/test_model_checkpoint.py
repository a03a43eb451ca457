import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from world_model.model.checkpoint import load_train_state, load_weights, save_train_state, save_weights
from world_model.model.network import IN_CHANNELS, WorldNet


def _outputs(net, grad=False):
    torch.manual_seed(1)
    x, s = torch.randn(2, IN_CHANNELS, 32, 32), torch.randn(2, 2)
    with torch.set_grad_enabled(grad):
        return net(x, s, torch.zeros(2))


def test_weights_round_trip_exactly(tiny_weights, tiny_widths):
    net, header = load_weights(tiny_weights)
    again, _ = load_weights(tiny_weights)
    a, b = _outputs(net), _outputs(again)
    assert header["format"] == "dreamx-worldnet" and json.loads(header["widths"]) == list(tiny_widths)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["rgb"].shape == (2, 3, 32, 32) and a["semantic"].shape == (2, 10, 32, 32)


def test_loading_names_what_is_wrong(tiny_weights, tiny_widths, tmp_path):
    tensors = load_file(str(tiny_weights))
    meta = {"format": "dreamx-worldnet", "version": "1", "widths": json.dumps(list(tiny_widths))}
    save_file(tensors, str(tmp_path / "v9.safetensors"), metadata={**meta, "version": "9"})
    with pytest.raises(ValueError, match="version 9"):
        load_weights(tmp_path / "v9.safetensors")
    save_file(tensors, str(tmp_path / "wide.safetensors"), metadata={**meta, "widths": "[16, 16, 16, 16]"})
    with pytest.raises(ValueError, match="wrong shapes"):
        load_weights(tmp_path / "wide.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a safetensors"):
        load_weights(tmp_path / "junk.safetensors")
    with pytest.raises(FileNotFoundError, match="dreamx-train"):
        load_weights(tmp_path / "missing.safetensors")


def test_training_state_resumes_weights_and_optimizer(tiny_widths, tmp_path):
    net = WorldNet(tiny_widths)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    _outputs(net, grad=True)["inv_depth"].sum().backward()
    opt.step()
    save_train_state(tmp_path / "state.safetensors", net, opt, {"step": 7})
    net2 = WorldNet(tiny_widths)
    opt2 = torch.optim.AdamW(net2.parameters(), lr=1e-3)
    meta = load_train_state(tmp_path / "state.safetensors", net2, opt2)
    assert meta["step"] == 7
    assert all(
        torch.equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values(), strict=True)
    )
    p, p2 = next(net.parameters()), next(net2.parameters())
    assert torch.equal(opt.state[p]["exp_avg"], opt2.state[p2]["exp_avg"])
    save_weights(tmp_path / "w.safetensors", net, {"step": 7})
    with pytest.raises(ValueError, match="not a training state"):
        load_train_state(tmp_path / "w.safetensors", net2, opt2)


def test_patch_variant_round_trips_and_is_told_apart(tiny_widths, tmp_path):
    torch.manual_seed(0)
    net = WorldNet(tiny_widths, patch=2).eval()  # loaded weights come in eval mode
    save_weights(tmp_path / "fast.safetensors", net, {"step": 3})
    again, header = load_weights(tmp_path / "fast.safetensors")
    a, b = _outputs(net), _outputs(again)
    assert again.patch == 2 and header["patch"] == "2"
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a file from before the variant existed has no "patch": it is a full-resolution network
    tensors = load_file(str(tmp_path / "fast.safetensors"))
    meta = {"format": "dreamx-worldnet", "version": "1", "widths": json.dumps(list(tiny_widths))}
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match="patch 1: .*wrong shapes"):
        load_weights(tmp_path / "old.safetensors")
    opt = torch.optim.AdamW(net.parameters())
    save_train_state(tmp_path / "state.safetensors", net, opt, {"step": 3})
    full = WorldNet(tiny_widths)
    with pytest.raises(ValueError, match="not a training state for .* patch 1"):
        load_train_state(tmp_path / "state.safetensors", full, torch.optim.AdamW(full.parameters()))
