"""dreamx-bench: a tiny run (batch 1 and 2, 0.2 s per point, one and two lanes) reports every section and
draws the plot; the yardstick is DIAMOND-size; WorldNet's FLOP count grows with the batch and the pixels."""

import argparse
import json

import pytest
import torch

from dreamx_bench.cli import main
from dreamx_bench.diamond_ref import DiamondRefUNet, sample_next_frame
from dreamx_bench.flops import worldnet_flops
from dreamx_bench.machine import CPU_INSTRUCTION_SETS
from dreamx_bench.model import bench as bench_learned
from world_model.model.device import cpu_features, resolve_precision
from world_model.model.network import IN_CHANNELS, WorldNet


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    argv = ["--batch-sizes", "1", "2", "--seconds", "0.2", "--frames-per-step", "1", "--matmul-size", "512"]
    argv += ["--warmup-frames", "6", "--lanes", "1", "2"]
    main([*argv, "--no-cuda", "--out", str(out)])
    return out


def test_report_has_every_section_with_positive_figures(out):
    results = json.loads((out / "bench.json").read_text())
    assert results["machine"]["cpu_model"] and results["machine"]["torch_threads"] >= 1
    peak = results["peak"]["cpu"]
    assert peak["gflops"] == max(peak["matmul_gflops"], peak["conv1x1_gflops"]) > 0
    assert peak["conv_tf32"] is False  # TF32 is a CUDA mode: the CPU's convolutions run in fp32
    assert results["learned"]["flops_per_frame"] > 0 and results["yardstick"]["flops_per_frame"] > 0
    sections = {
        "learned": results["learned"]["points"]["cpu"],
        "env": results["env"]["points"]["learned"],
        "yardstick": results["yardstick"]["points"]["cpu"],
    }
    for name, points in sections.items():
        assert [p["batch"] for p in points] == [1, 2], name
        for p in points:
            for key in ("frames_per_s", "ms_per_call", "gflops", "share_of_peak"):
                assert p[key] > 0, (name, key, p)
    for p in sections["learned"] + sections["yardstick"]:
        assert 0 < p["median_ms"] <= p["p95_ms"]
    assert all(p["warmup_frames"] == 6 for p in sections["learned"] + sections["env"])
    assert list(results["ratios"]) == ["cpu"] and [r["batch"] for r in results["ratios"]["cpu"]] == [1, 2]
    for r, learned, env, yardstick in zip(results["ratios"]["cpu"], *sections.values(), strict=True):
        assert r["alone/yardstick"] == pytest.approx(learned["frames_per_s"] / yardstick["frames_per_s"])
        assert r["env:learned/yardstick"] == pytest.approx(env["frames_per_s"] / yardstick["frames_per_s"])


def test_report_names_the_cpu_its_instruction_sets_and_the_precision_that_ran(out):
    results = json.loads((out / "bench.json").read_text())
    machine = results["machine"]
    assert machine["cpu_model"]
    assert machine["cpu_instruction_sets"] == [f for f in CPU_INSTRUCTION_SETS if f in cpu_features()]
    assert machine["torch_cpu_capability"] in ("DEFAULT", "AVX2", "AVX512", "ZVECTOR", "VSX", "SVE256")
    assert results["settings"]["precision"] == "auto"  # the default, resolved per device as below
    ran = resolve_precision("auto", torch.device("cpu"))  # bf16 only where native and measured faster
    assert results["learned"]["precision"] == results["yardstick"]["precision"] == {"cpu": ran}


def test_laned_env_path_is_measured_beside_the_one_lane_path(out):
    results = json.loads((out / "bench.json").read_text())
    one, two = results["env"]["points"]["learned"], results["env"]["points"]["learned, 2 lanes"]
    assert [p["lanes"] for p in one] == [1, 1] and [p["lanes"] for p in two] == [1, 2]  # at most one per env
    assert all(p["frames_per_s"] > 0 for p in two)
    assert all("env:learned, 2 lanes/yardstick" in r for r in results["ratios"]["cpu"])


def test_sessions_fill_their_memory_before_they_are_timed():
    class Counting:  # counts the frames each session has generated when each call starts
        def __init__(self):
            self.frames, self.seen = {}, []

        def open(self, seed):
            self.frames[seed] = 0
            return seed, None

        def generate(self, sids, rel, events):
            self.seen.append(min(self.frames[s] for s in sids))
            for s in sids:
                self.frames[s] += rel.shape[1]

        def close(self, sid):
            del self.frames[sid]

    model = Counting()
    point = bench_learned(model, batch=3, chunk=4, seconds=0.01, warmup_frames=20)
    timed = model.seen[-point["calls"] :]
    assert timed[0] >= 20 and point["warmup_frames"] == 20 and not model.frames  # all closed after


def test_report_plot_is_a_png(out):
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_yardstick_is_diamond_size():
    net = DiamondRefUNet()
    params = sum(p.numel() for p in net.parameters())
    assert abs(params - 4.4e6) <= 0.3e6, f"{params / 1e6:.2f} M parameters, DIAMOND's Atari model has 4.4 M"
    frame = sample_next_frame(net, torch.zeros(2, 12, 64, 64), torch.zeros(2, 4, dtype=torch.long), steps=1)
    assert frame.shape == (2, 3, 64, 64) and torch.isfinite(frame).all()


def test_yardstick_runs_through_the_forward_it_is_given():
    """dreamx-bench --cpu-compile passes the yardstick compiled: every denoising pass must go through it,
    channels-last inputs included."""
    net = DiamondRefUNet().eval().to(memory_format=torch.channels_last)
    calls = []

    def forward(*args):
        calls.append(args[0].is_contiguous(memory_format=torch.channels_last))
        return net(*args)

    past = torch.zeros(1, 12, 64, 64).contiguous(memory_format=torch.channels_last)
    sample_next_frame(net, past, torch.zeros(1, 4, dtype=torch.long), 3, forward)
    assert calls == [True, True, True]
    compiled = torch.compile(net)  # a compiled module has no truth value: it must not be asked for one
    assert sample_next_frame(net, past, torch.zeros(1, 4, dtype=torch.long), 1, compiled).shape[1] == 3


def test_worldnet_flops_scale_with_batch_and_pixels():
    net = WorldNet()
    one = worldnet_flops(net, 1, 32, 32)
    assert one > 0
    assert worldnet_flops(net, 3, 32, 32) == 3 * one
    assert worldnet_flops(net, 1, 64, 64) == pytest.approx(4 * one, rel=0.01)


def test_patch_variant_draws_full_frames_for_about_a_quarter_of_the_flops():
    full, fast = WorldNet(), WorldNet(patch=2)
    x = torch.randn(2, IN_CHANNELS, 64, 64)
    with torch.no_grad():
        out = fast(x, torch.zeros(2, 2), torch.zeros(2))
    assert out["rgb"].shape == (2, 3, 64, 64) and out["inv_depth"].shape == (2, 64, 64)
    assert out["semantic"].shape == (2, 10, 64, 64)
    ratio = worldnet_flops(fast, 1, 64, 64) / worldnet_flops(full, 1, 64, 64)
    assert 0.2 < ratio < 0.35
    with pytest.raises(ValueError, match="patch"):
        WorldNet(patch=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where there is no GPU")
def test_asking_for_a_missing_gpu_fails_clearly(capsys):
    from dreamx_bench.cli import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--devices", "cuda"])
    assert "torch sees no CUDA device" in capsys.readouterr().err
    assert parse_args(["--devices", "cpu", "cpu"]).devices == ["cpu"]
    assert parse_args(["--no-cuda"]).devices == ["cpu"]


def test_settings_take_turns_and_each_gets_a_figure_per_batch_size():
    from dreamx_bench.settings import compare

    result = compare("learned_v1", ["auto:eager", "fp32:eager"], [1, 2], rounds=2, warmup_calls=1)
    assert set(result["ms_per_frame"]) == {"auto:eager", "fp32:eager"}
    assert all(set(ms) == {"1", "2"} and min(ms.values()) > 0 for ms in result["ms_per_frame"].values())


@pytest.mark.parametrize("text", ["fp16:eager", "fp32", "fp32:jit"])
def test_a_malformed_setting_is_refused_with_the_form_it_needs(text):
    from dreamx_bench.settings import parse_setting

    with pytest.raises(argparse.ArgumentTypeError, match="PRECISION:FORM"):
        parse_setting(text)
