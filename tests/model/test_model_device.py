"""Where tensors live, and how the CPU backend sets up the process's allocator."""

import platform

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
