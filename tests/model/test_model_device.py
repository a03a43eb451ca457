"""Where tensors live, in what precision the network runs, and how the backend sets up the process's
allocator and garbage collector."""

import gc
import json
import platform
import warnings

import numpy as np
import pytest
import torch

import world_model.host_memory as host_memory
import world_model.model.device as device
import world_model.model.learned as learned
from world_model.model.checkpoint import load_weights
from world_model.model.learned import LearnedConfig, LearnedWorldModel

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")


def test_resolve_device_names_and_refusals():
    assert device.resolve_device("cpu").type == "cpu"
    assert device.resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device must be one of"):
        device.resolve_device("tpu")


def test_cpu_features_reads_x86_flags_and_arm_features(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\nmodel name\t: X\n")
    monkeypatch.setattr(device, "CPUINFO", cpuinfo)
    assert {"avx2", "avx512f", "avx512_bf16"} <= device.cpu_features.__wrapped__()
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")
    assert "bf16" in device.cpu_features.__wrapped__() and "X" not in device.cpu_features.__wrapped__()
    monkeypatch.setattr(device, "CPUINFO", tmp_path / "absent")
    assert device.cpu_features.__wrapped__() == frozenset()


@pytest.mark.parametrize(
    "features, faster, expected",
    [
        (frozenset(), True, "fp32"),
        (frozenset({"avx2", "avx512f"}), True, "fp32"),  # AVX-512 without its bf16 extension: emulated
        (frozenset({"avx2", "avx512f", "avx512_bf16"}), True, "bf16"),
        (frozenset({"avx2", "avx512f", "avx512_bf16"}), False, "fp32"),  # native, but measured slower
        (frozenset({"avx2", "amx_bf16"}), True, "bf16"),
        (frozenset({"asimd", "bf16"}), True, "bf16"),  # Arm
    ],
)
def test_auto_precision_is_bf16_only_where_the_cpu_has_it_and_it_pays(
    tiny_weights, monkeypatch, features, faster, expected
):
    monkeypatch.setattr(device, "cpu_features", lambda: features)
    monkeypatch.setattr(device, "cpu_bf16_faster", lambda: faster)
    asked = LearnedConfig(weights=str(tiny_weights), device="cpu")
    assert asked.precision == "auto"  # the default
    m = LearnedWorldModel(asked)
    assert m.config.precision == m.info().extra["precision"] == expected  # what runs, and what reports say
    assert asked.precision == "auto"  # the caller's config is left as given


def test_training_rollouts_run_in_fp32_where_auto_would_pick_bf16(tiny_dataset, tiny_weights, monkeypatch):
    """Training's own rollouts run the network as training's passes do, whatever the CPU offers."""
    import numpy as np

    from world_model.model.data import TrajectoryStore
    from world_model.model.rollouts import SelfRollouts

    monkeypatch.setattr(device, "cpu_features", lambda: frozenset({"avx512_bf16"}))
    monkeypatch.setattr(device, "cpu_bf16_faster", lambda: True)
    net, _ = load_weights(tiny_weights)
    store = TrajectoryStore(tiny_dataset, progress=False)
    rollouts = SelfRollouts(store, np.arange(len(store)), 1, net, np.random.default_rng(0))
    assert rollouts.model.config.precision == "fp32"
    served = LearnedWorldModel(LearnedConfig(weights=str(tiny_weights), device="cpu"))
    assert served.config.precision == "bf16"


def test_the_bf16_speed_probe_runs_once_per_machine_and_wants_a_clear_win(tmp_path, monkeypatch):
    """``cpu_bf16_faster`` times fp32 against bf16 once, keeps the verdict in the cache folder (so every
    later process of this machine chooses the same), and takes bf16 only when it is 10% faster."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(device, "cpu_features", lambda: frozenset({"avx512_bf16"}))
    probes = []

    def probe(seconds):
        return lambda: probes.append(seconds) or seconds

    monkeypatch.setattr(device, "_probe_seconds", probe((1.0, 0.95)))  # 5% faster: not enough
    assert device.cpu_bf16_faster.__wrapped__() is False
    monkeypatch.setattr(device, "_probe_seconds", probe((1.0, 0.5)))
    assert device.cpu_bf16_faster.__wrapped__() is False  # the machine's verdict stands: not timed again
    assert len(probes) == 1
    (verdict,) = json.loads((tmp_path / "dreamx_env" / device.PROBE_FILE).read_text()).values()
    assert verdict == {"fp32_s": 1.0, "bf16_s": 0.95, "bf16": False}
    monkeypatch.setattr(torch, "get_num_threads", lambda: 7)  # another thread count: timed anew
    assert device.cpu_bf16_faster.__wrapped__() is True and len(probes) == 2


def test_the_bf16_speed_probe_times_both_precisions_and_leaves_the_random_stream_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    fp32, bf16 = device._probe_seconds(rounds=1)
    assert 0 < fp32 < 10 and 0 < bf16 < 10
    assert torch.equal(torch.rand(3), expected)


def test_explicit_bf16_on_a_cpu_without_it_warns_once_and_runs(tiny_weights, monkeypatch):
    device._warn_emulated_bf16.cache_clear()
    weights = str(tiny_weights)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        monkeypatch.setattr(device, "cpu_features", lambda: frozenset({"avx2", "avx512_bf16"}))
        LearnedWorldModel(LearnedConfig(weights=weights, device="cpu", precision="bf16"))
        assert caught == []  # native: nothing to say
        monkeypatch.setattr(device, "cpu_features", lambda: frozenset({"avx2", "avx512f"}))
        LearnedWorldModel(LearnedConfig(weights=weights, device="cpu", precision="fp32"))
        assert caught == []
        for _ in range(2):
            m = LearnedWorldModel(LearnedConfig(weights=weights, device="cpu", precision="bf16"))
            assert m.config.precision == "bf16"  # as asked
    assert len(caught) == 1 and "several times slower than fp32" in str(caught[0].message)


@glibc_only
def test_keep_freed_memory_sets_glibc_malloc_unless_told_not_to(monkeypatch):
    assert host_memory.keep_freed_memory.__wrapped__() is True
    monkeypatch.setenv("DREAMX_MALLOC_DEFAULT", "1")
    assert host_memory.keep_freed_memory.__wrapped__() is False


def test_the_cpu_backend_keeps_freed_memory(tiny_weights, monkeypatch):
    calls = []
    monkeypatch.setattr(learned, "keep_freed_memory", lambda: calls.append(1))
    LearnedWorldModel(LearnedConfig(weights=str(tiny_weights), device="cpu"))
    assert calls == [1]


def test_freeze_live_objects_exempts_what_is_alive_unless_told_not_to(monkeypatch):
    frozen = gc.get_freeze_count()
    kept = [[] for _ in range(1000)]  # live, gc-tracked: frozen with the rest
    assert device.freeze_live_objects() is True
    assert gc.get_freeze_count() >= frozen + len(kept)
    monkeypatch.setenv("DREAMX_GC_DEFAULT", "1")
    frozen, more = gc.get_freeze_count(), [[] for _ in range(1000)]
    assert device.freeze_live_objects() is False
    assert gc.get_freeze_count() == frozen and len(more) == 1000


def test_the_backend_freezes_once_its_network_has_run_a_new_batch_shape(tiny_weights, monkeypatch):
    calls = []
    monkeypatch.setattr(learned, "freeze_live_objects", lambda: calls.append(1))
    m = LearnedWorldModel(LearnedConfig(weights=str(tiny_weights), device="cpu"))
    one, two = m.open(3)[0], m.open(4)[0]
    rel = np.tile(np.eye(4), (1, 2, 1, 1))
    m.generate([one], rel, [[]])
    assert calls == [1]  # after the first call: batch 1 ran for the first time (in open)
    m.generate([one], rel, [[]])
    m.generate([two], rel, [[]])
    assert calls == [1]  # batch 1 again: nothing new to freeze
    m.generate([one, two], np.concatenate([rel, rel]), [[], []])
    assert calls == [1, 1]  # batch 2 is new


def test_retrieval_runs_on_the_host_unless_there_is_no_c_kernel_and_many_sessions(tiny_weights, monkeypatch):
    m = LearnedWorldModel(LearnedConfig(weights=str(tiny_weights), device="cpu"))
    m.device = "cuda:0"  # only read as where a batched pass would go: nothing runs here
    many = learned.RETRIEVE_ON_HOST_UP_TO + 1
    monkeypatch.setattr(learned, "native_available", lambda: True)
    assert m._retrieval_device(1) == m._retrieval_device(256) == "cpu"
    monkeypatch.setattr(learned, "native_available", lambda: False)
    assert m._retrieval_device(learned.RETRIEVE_ON_HOST_UP_TO) == "cpu"
    assert m._retrieval_device(many) == "cuda:0"
