"""How the network runs fast on a GPU: CUDA graphs at small batch sizes, ``torch.compile`` at large ones.

At small batches launching a pass's ~100 kernels one by one costs more than running them, which a graph's
replay avoids; at large ones the kernels dominate, and inductor's fused kernels (GroupNorm, FiLM and SiLU in
one pass over memory) save more than a graph would, at a one-off compile per batch size (the timings:
``docs/speed.md``, "Measurements behind the code's choices").
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable

import torch

MAX_GRAPHED_BATCH = 64  # above this, a graph saves too little for the memory it pins
MAX_GRAPHS = 8  # batch sizes kept captured (least recently used goes first)
WARMUP_PASSES = 3


class GraphedForward:
    """``forward(*inputs) -> dict of tensors`` replayed from one CUDA graph per input layout (shapes,
    strides, dtypes, and which inputs are ``None``), meant for batches up to ``MAX_GRAPHED_BATCH``.

    The first call for a layout runs eagerly on a side stream to warm up, then captures; later calls copy
    the inputs into the graph's buffers and replay. Outputs are copies, safe to keep across calls."""

    def __init__(self, forward: Callable[..., dict[str, torch.Tensor]]) -> None:
        self.forward = forward
        self.pool = torch.cuda.graph_pool_handle()
        self.graphs: OrderedDict[tuple, tuple] = OrderedDict()

    def __call__(self, *inputs: torch.Tensor | None) -> dict[str, torch.Tensor]:
        key = tuple(None if t is None else (tuple(t.shape), t.stride(), t.dtype) for t in inputs)
        if key not in self.graphs:
            self.graphs[key] = self._capture(inputs)
            while len(self.graphs) > MAX_GRAPHS:
                self.graphs.popitem(last=False)
        self.graphs.move_to_end(key)
        graph, buffers, outputs = self.graphs[key]
        for buffer, value in zip(buffers, inputs, strict=True):
            if buffer is not None:
                buffer.copy_(value)
        graph.replay()
        return {k: v.clone() for k, v in outputs.items()}

    def _capture(self, inputs: tuple[torch.Tensor | None, ...]) -> tuple:
        buffers = tuple(None if t is None else t.clone() for t in inputs)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_PASSES):
                self.forward(*buffers)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            outputs = self.forward(*buffers)
        return graph, buffers, outputs


class CompiledForward:
    """``forward`` through ``torch.compile`` (``dynamic=False``: one static-shape compile per batch size);
    where compiling fails (no working toolchain), a warning and the eager ``forward`` from then on.

    ``cpp_wrapper`` (for the CPU): inductor writes the code that calls the kernels in C++, not Python. For
    ``learned_fast`` in bf16 it saves 0.11 ms of a 1.86 ms pass at batch 1 and 1% at batch 32 (the same
    outputs bit for bit), and from an empty cache it compiles faster (18-19 s against 27-29 at batch 32)."""

    def __init__(self, forward: Callable, dynamic: bool = False, cpp_wrapper: bool = False) -> None:
        self.eager = forward
        options = {"cpp_wrapper": True} if cpp_wrapper else None
        self.compiled: Callable | None = torch.compile(forward, dynamic=dynamic, options=options)

    def __call__(self, *args):
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except Exception as err:  # noqa: BLE001 - any compiler failure: the eager network still works
                name = getattr(self.eager, "__name__", type(self.eager).__name__)
                warnings.warn(f"torch.compile failed, running {name} eagerly: {err}", stacklevel=2)
                self.compiled = None
        return self.eager(*args)
