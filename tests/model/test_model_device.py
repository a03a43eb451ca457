"""Where tensors live, and how the backend sets up the process's allocator and garbage collector."""

import gc
import platform

import numpy as np
import pytest

import world_model.model.device as device
import world_model.model.learned as learned
from world_model.model.learned import LearnedConfig, LearnedWorldModel

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")


def test_resolve_device_names_and_refusals():
    assert device.resolve_device("cpu").type == "cpu"
    assert device.resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device must be one of"):
        device.resolve_device("tpu")


@glibc_only
def test_keep_freed_memory_sets_glibc_malloc_unless_told_not_to(monkeypatch):
    assert device.keep_freed_memory.__wrapped__() is True
    monkeypatch.setenv("DREAMX_MALLOC_DEFAULT", "1")
    assert device.keep_freed_memory.__wrapped__() is False


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
