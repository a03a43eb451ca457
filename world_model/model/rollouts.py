"""Self-forcing: training rows that walk the data's trajectories on the model's own outputs.

Teacher-forced rows (``data.TrajectoryStore.example``) give the network memories made of ground-truth
frames and depth. At inference every memory after the first frame is the network's own output, so its depth
errors compound frame after frame, and nothing in those rows teaches the network to correct them. Each row
of ``SelfRollouts`` is a session of a ``LearnedWorldModel`` that runs the network being trained: it opens on
a frame of a training trajectory (encoded by the network, as a user's first frame is), and at every training
step the network predicts that trajectory's next frame from the session's memory, the loss compares it with
the ground truth, and the prediction (detached: no gradient through memory) goes into memory. The network is
so trained on inputs made exactly as generation makes them (retrieval, the z-buffer's rules, event props),
over whole trajectories and their revisits, for the cost of one ordinary row a step; the network changes a
little between a rollout's frames, as in rolling self-forcing.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import torch

from world_model.events import EventRecord
from world_model.model.data import TrajectoryStore
from world_model.model.learned import LearnedConfig, LearnedWorldModel, NextFrame, frame_outputs
from world_model.model.network import WorldNet

MIN_FRAMES = 16  # a rollout starts at least this many frames before its trajectory ends


@dataclasses.dataclass
class _Walk:
    session: int
    trajectory: int
    frame: int  # the latest frame the session has (given or generated)


class SelfRollouts:
    """``count`` sessions walking trajectories ``rows`` of ``store`` with ``net`` (shared, not copied), under
    the inference settings ``config`` (collision off: the data's cameras are followed as given)."""

    def __init__(
        self,
        store: TrajectoryStore,
        rows: np.ndarray,
        count: int,
        net: WorldNet,
        rng: np.random.Generator,
        config: LearnedConfig | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        cfg = dataclasses.replace(
            config or LearnedConfig(),
            height=store.height,
            width=store.width,
            vfov_deg=store.vfov_deg,
            collide=False,
            render_missing=False,
            device=str(device),
            precision="fp32",  # as the training passes run
            start_bank="",  # sessions open on the data's frames: no start bank to load
        )
        header = {"height": str(store.height), "width": str(store.width)}
        self.model = LearnedWorldModel(cfg, network=(net, header))
        self.store, self.rows, self.rng = store, rows, rng
        self.walks: list[_Walk | None] = [None] * count
        self._step: NextFrame | None = None

    def __len__(self) -> int:
        return len(self.walks)

    def _start(self) -> _Walk:
        """A session opened on a random frame of a random trajectory, before its first event (the session's
        world starts as opened) and at least ``MIN_FRAMES`` before its end."""
        store = self.store
        n = int(self.rng.choice(self.rows))
        evented = np.flatnonzero(store.events[n] != "")
        last = min(store.frames - MIN_FRAMES, int(evented[0]) if len(evented) else store.frames)
        t = int(self.rng.integers(0, max(last, 1)))
        sid, _, _ = self.model.open(
            first_frame=store.rgb[n, t], start_pose=store.poses[n, t].astype(np.float64)
        )
        return _Walk(sid, n, t)

    def inputs(self) -> tuple[torch.Tensor, torch.Tensor, tuple[np.ndarray, np.ndarray]]:
        """The network's input and world state for every walk's next frame, and the (trajectory, frame)
        index of the ground truth it is trained towards. Walks at the end of their trajectory start anew."""
        store = self.store
        for i, walk in enumerate(self.walks):
            if walk is None or walk.frame + 1 >= store.frames:
                if walk is not None:
                    self.model.close(walk.session)
                self.walks[i] = self._start()
        walks = [w for w in self.walks if w is not None]
        n = np.array([w.trajectory for w in walks])
        t = np.array([w.frame + 1 for w in walks])
        events = [
            [EventRecord.from_dict(d) for d in json.loads(str(store.events[a, b]))]
            if store.events[a, b]
            else []
            for a, b in zip(n, t, strict=True)
        ]
        poses = store.poses[n, t].astype(np.float64)
        self._step = self.model.next_inputs([w.session for w in walks], poses, events)
        return self._step.inputs(), self._step.state, (n, t)

    def commit(self, out: dict[str, torch.Tensor]) -> None:
        """Remember the network's outputs ``out`` for the frames ``inputs`` asked for (rows in its order)."""
        if self._step is None:
            raise RuntimeError("commit without inputs")
        made = frame_outputs(out)
        made |= {"rgb": made["planes"][:, 0:3], "depth": made["planes"][:, 3]}
        walks = [w for w in self.walks if w is not None]
        self.model.commit_frame([w.session for w in walks], self._step, made)
        for w in walks:
            w.frame += 1
        self._step = None
