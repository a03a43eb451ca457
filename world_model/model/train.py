"""``dreamx-train``: train ``WorldNet`` on ground-truth shards (Hydra; config ``configs/model/train.yaml``).

    dreamx-train data_dir=data/engine/train out_dir=runs/learned            # ~2 CPU-hours
    dreamx-train +size=gpu                                                  # larger net and batch, CUDA
    dreamx-train +size=fast out_dir=runs/learned_fast                       # the cheap variant (patch 2)

One command, resumable (``out_dir/train_state.safetensors`` is rewritten every ``checkpoint_every`` steps
and picked up on restart), a progress bar, TensorBoard logs in ``out_dir/tb`` and sample sheets of held-out
*training* seeds in ``out_dir/samples`` (the validation split is for ``dreamx-eval`` only). Weights for the
backend are written to ``out_dir/weights.safetensors``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from world_model.model.checkpoint import load_train_state, load_weights, save_train_state, save_weights
from world_model.model.conditioning import (
    assemble,
    entries_from_outputs,
    first_frame_inputs,
    state_batch,
    warp_memories,
)
from world_model.model.data import Example, TrajectoryStore, from_unit, to_unit
from world_model.model.device import resolve_device
from world_model.model.learned import LearnedConfig, weights_path
from world_model.model.network import WorldNet, inverse_depth
from world_model.model.reproject import floor_depth
from world_model.model.rollouts import SelfRollouts
from world_model.options import check_options
from world_model.semantics import SEMANTIC_CLASSES
from world_model.splits import SPLITS


@dataclass
class TrainConfig:
    data_dir: str = "data/engine/train"
    out_dir: str = "runs/learned"
    steps: int = 2800
    batch_size: int = 16
    lr: float = 1e-3
    warmup_steps: int = 0  # the learning rate rises linearly over these first steps (fine-tuning: Adam's
    # first steps move every weight by about ``lr`` whatever its gradient)
    weight_decay: float = 1e-4
    widths: list[int] = field(default_factory=lambda: [32, 64, 96, 128])
    patch: int = 1  # 2: the cheap variant, the UNet on 2x2 pixel patches (network.WorldNet)
    floor: bool = False  # the floor channel: the floor plane's depth from the camera (network.WorldNet)
    memory_k: int = 4  # memories warped into each target (latest + retrieved)
    first_frame_prob: float = 0.1  # rows that encode a given frame (predict its depth and semantics)
    self_context_prob: float = 0.3  # rows whose latest memory is the model's own prediction (exposure bias)
    refine_prob: float = 0.25  # rows trained as the second sampler step, refining a first-step output
    event_prob: float = 0.0  # rows drawn from the 8 frames after an event (memories from before it)
    rollout_rows: int = 0  # more rows a batch, each a rollout on the model's own outputs (``rollouts``)
    rollout_seen_weight: float = 1.0  # the rollout rows' colour loss where memory covers the frame (0: only
    # where it must be imagined; their memory there is the model's own and the loss would teach it to
    # overrule what it remembers)
    init_weights: str | None = None  # start from these weights (fine-tuning; a path or a shipped name)
    warp_rules: str = "v1"  # how teacher-forced rows warp memories: "generation" (LearnedConfig's z-buffer
    # rules, as the model runs) or "v1" (the nearest surface wins, as learned_v1 was trained)
    unseen_weight: float = 3.0  # extra colour-loss weight on pixels no memory covers (what must be imagined)
    train_only: str = "all"  # "semantic_head": only the semantic logits' rows of the output head learn (a
    # linear read-out of the final features), so colour and depth stay bit for bit those of init_weights
    semantic_balance: float = 0.0  # class weights of the semantic loss: (pixel share)^-balance, mean 1 (0:
    # plain cross-entropy; objects are ~3% of the pixels, and plain training labels few of them as objects)
    aux_weight_start: float = 1.0  # depth + semantics loss weight, annealed linearly (DreamWorld)
    aux_weight_end: float = 0.2
    holdout_seeds: int = 8  # the last training seeds of the data are held out for sample sheets
    log_every: int = 25
    sample_every: int = 500
    checkpoint_every: int = 200
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None
    seed: int = 0


class Trainer:
    def __init__(self, cfg: TrainConfig, store: TrajectoryStore | None = None) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.store = store or TrajectoryStore(cfg.data_dir)
        lo, hi = SPLITS["validation"]
        if ((self.store.seed >= lo) & (self.store.seed < hi)).any():
            raise ValueError(f"{cfg.data_dir} holds validation seeds {lo}-{hi - 1}: never train on them")
        seeds = np.unique(self.store.seed)
        held = seeds[-cfg.holdout_seeds :] if 0 < cfg.holdout_seeds < len(seeds) else seeds[:0]
        self.train_rows = np.flatnonzero(~np.isin(self.store.seed, held))
        self.holdout_rows = np.flatnonzero(np.isin(self.store.seed, held))
        train = np.isin(np.arange(len(self.store)), self.train_rows)
        self.event_frames = np.argwhere((self.store.events != "") & train[:, None])  # (row, frame) pairs
        self.net = WorldNet(tuple(cfg.widths), cfg.patch, cfg.floor).to(self.device)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.step = 0
        self.out = Path(cfg.out_dir)
        self.state_path = self.out / "train_state.safetensors"
        self.rng = np.random.default_rng([cfg.seed, 0])
        if self.state_path.is_file():
            meta = load_train_state(self.state_path, self.net, self.opt)
            self.step = int(meta["step"])
            if "numpy_rng" in meta:  # the batches an uninterrupted run would have drawn next
                self.rng.bit_generator.state = meta["numpy_rng"]
            else:  # a state saved before the random state was
                self.rng = np.random.default_rng([cfg.seed, self.step])
        elif cfg.init_weights:
            start_from(self.net, load_weights(weights_path(cfg.init_weights))[0])
        if cfg.train_only not in ("all", "semantic_head"):
            raise ValueError(f"train_only must be 'all' or 'semantic_head', got {cfg.train_only!r}")
        if cfg.train_only == "semantic_head":
            _train_semantic_head_only(self.net, self.opt)
        self.semantic_weights = _class_weights(self.store, self.train_rows, cfg.semantic_balance, self.device)
        if cfg.warp_rules not in ("v1", "generation"):
            raise ValueError(f"warp_rules must be 'v1' or 'generation', got {cfg.warp_rules!r}")
        self.warp_rules = LearnedConfig()  # generation's memory rules (the rollout rows always use them)
        self.rollouts = None
        if cfg.rollout_rows:  # rollouts restart fresh on resume (their memories are not checkpointed, so
            # a resumed run with rollouts is not bit-identical to an uninterrupted one; without, it is)
            self.rollouts = SelfRollouts(
                self.store,
                self.train_rows,
                cfg.rollout_rows,
                self.net,
                self.rng,
                self.warp_rules,
                self.device,
            )

    # -- one batch --------------------------------------------------------------------------------------
    def _predict(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            x, state = self._inputs(examples)
            out = self.net(
                x.to(self.device), state.to(self.device), torch.zeros(len(examples), device=self.device)
            )
        return {k: v.cpu() for k, v in out.items()}

    def _inputs(self, examples: list[Example]) -> tuple[torch.Tensor, torch.Tensor]:
        intr = self.store.intr
        poses = np.stack([e.pose for e in examples])
        memories, rules = [e.memories for e in examples], self.warp_rules
        if self.cfg.warp_rules == "v1":  # the nearest surface wins (learned_v1 was trained so)
            warped = warp_memories(memories, poses, intr)
        else:
            warped = warp_memories(
                memories, poses, intr, rules.prefer_older, rules.footprint, tolerance=rules.same_surface,
                door_open=[e.state.door_open for e in examples], looks=[e.state.look for e in examples],
            )  # fmt: skip
        hints = np.concatenate([e.state.hints(e.pose[None], intr) for e in examples])
        floor = self._floor(poses)
        return assemble(warped, hints, floor=floor), state_batch([e.state for e in examples])

    def _floor(self, poses: np.ndarray) -> torch.Tensor | None:
        """The floor channel for cameras ``poses``, if the network takes it."""
        return floor_depth(torch.from_numpy(poses), self.store.intr).float() if self.net.floor else None

    def batch(self) -> list[Example]:
        cfg, rng, store = self.cfg, self.rng, self.store
        rows = rng.choice(self.train_rows, cfg.batch_size)
        ts = rng.integers(1, store.frames, cfg.batch_size)
        # events are rare in the data: the first frames after one teach the change (no draws at
        # event_prob=0, so runs without it reproduce)
        near = rng.random(cfg.batch_size) < cfg.event_prob if cfg.event_prob > 0 else np.zeros(0, bool)
        if near.any() and len(self.event_frames):
            picked = self.event_frames[rng.integers(0, len(self.event_frames), int(near.sum()))]
            rows[near] = picked[:, 0]
            ts[near] = np.clip(picked[:, 1] + rng.integers(0, 8, len(picked)), 1, store.frames - 1)
        examples = [store.example(int(n), int(t), rng, cfg.memory_k) for n, t in zip(rows, ts, strict=True)]
        own = [i for i, e in enumerate(examples) if e.key[1] >= 2 and rng.random() < cfg.self_context_prob]
        if own:  # the latest memory becomes the model's own prediction of it
            prev = [store.example(examples[i].key[0], examples[i].key[1] - 1, rng, cfg.memory_k) for i in own]
            out = self._predict(prev)
            made = entries_from_outputs(
                out,
                np.stack([p.pose for p in prev]),
                [p.key[1] for p in prev],
                [p.state for p in prev],
                store.intr,
            )
            for i, entry in zip(own, made, strict=True):
                examples[i].memories[0] = entry
        return examples

    def losses(self, examples: list[Example], aux_weight: float) -> dict[str, torch.Tensor]:
        cfg, dev, store = self.cfg, self.device, self.store
        b = len(examples)
        x, state = self._inputs(examples)
        target_rgb = to_unit(np.stack([e.rgb for e in examples]))
        first = torch.from_numpy(self.rng.random(b) < cfg.first_frame_prob)
        if first.any():
            poses = np.stack([e.pose for e in examples])[first.numpy()]
            floor = self._floor(poses)
            x[first] = first_frame_inputs(target_rgb[first], floor)
        step = torch.zeros(b)
        refine = torch.from_numpy(self.rng.random(b) < cfg.refine_prob) & ~first
        depth = np.stack([e.depth for e in examples])
        sem = np.stack([e.semantic for e in examples])
        if self.rollouts is not None:  # rows on the model's own outputs, after the teacher-forced ones
            xr, state_r, (n, t) = self.rollouts.inputs()
            x, state = torch.cat([x, xr]), torch.cat([state, state_r])
            target_rgb = torch.cat([target_rgb, to_unit(store.rgb[n, t])])
            depth = np.concatenate([depth, store.depth[n, t].astype(np.float32)])
            sem = np.concatenate([sem, store.semantic[n, t]])
            step, refine = (
                torch.cat([step, torch.zeros(len(n))]),
                torch.cat([refine, torch.zeros(len(n), dtype=bool)]),
            )
        x, state, step = x.to(dev), state.to(dev), step.to(dev)
        if refine.any():
            r = refine.to(dev)
            with torch.no_grad():
                est = self.net(x[r], state[r], step[r])["rgb"]
            x[r, 8:11] = est
            x[r, 11] = 1.0
            step[r] = 1.0
        out = self.net(x, state, step)
        if self.rollouts is not None:
            self.rollouts.commit({k: v[b:] for k, v in out.items()})
        target_rgb = target_rgb.to(dev)
        inv = torch.from_numpy(inverse_depth(depth)).to(dev)
        sem = torch.from_numpy(sem.astype(np.int64)).to(dev)
        weight = 1.0 + cfg.unseen_weight * (1.0 - x[:, 4:5])  # channel 4: the warp's validity mask
        if self.rollouts is not None:
            seen = x[b:, 4:5]
            weight[b:] = (1.0 - seen) * (1.0 + cfg.unseen_weight) + seen * cfg.rollout_seen_weight
        rgb = (weight * (out["rgb"] - target_rgb).abs()).mean() / weight.mean()
        inv_depth = F.l1_loss(out["inv_depth"], inv)
        semantic = F.cross_entropy(out["semantic"], sem, weight=self.semantic_weights)
        total = rgb + aux_weight * (inv_depth + 0.1 * semantic)
        losses = {"loss": total, "rgb_l1": rgb, "inv_depth_l1": inv_depth, "semantic_ce": semantic}
        if self.rollouts is not None:  # the rollout rows' own figures, to watch (not optimised apart)
            with torch.no_grad():
                losses["rollout_rgb_l1"] = (out["rgb"][b:] - target_rgb[b:]).abs().mean()
                losses["rollout_inv_depth_l1"] = (out["inv_depth"][b:] - inv[b:]).abs().mean()
        return losses

    # -- loop -------------------------------------------------------------------------------------------
    def save(self, meta_extra: dict[str, Any] | None = None) -> None:
        meta = {
            "step": self.step,
            "config": asdict(self.cfg),
            "command": " ".join(sys.argv),
            "numpy_rng": self.rng.bit_generator.state,
        }
        save_train_state(self.state_path, self.net, self.opt, meta)
        store = self.store
        save_weights(
            self.out / "weights.safetensors",
            self.net,
            {
                "step": self.step,
                "height": store.height,
                "width": store.width,
                "vfov_deg": store.vfov_deg,
                "memory_k": self.cfg.memory_k,
                "config": asdict(self.cfg),
                "command": "dreamx-train " + " ".join(sys.argv[1:]),
                **(meta_extra or {}),
            },
        )

    def run(self) -> None:
        from torch.utils.tensorboard import SummaryWriter

        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
        writer = SummaryWriter(str(self.out / "tb"))
        bar = tqdm(total=cfg.steps, initial=self.step, desc="training WorldNet", unit="step")
        started = time.time()
        while self.step < cfg.steps:
            progress = self.step / max(cfg.steps, 1)
            lr = (
                cfg.lr
                * 0.5
                * (1 + np.cos(np.pi * progress))
                * min(1.0, (self.step + 1) / (cfg.warmup_steps + 1))
            )
            for g in self.opt.param_groups:
                g["lr"] = lr
            aux = cfg.aux_weight_start + (cfg.aux_weight_end - cfg.aux_weight_start) * progress
            self.net.train()
            losses = self.losses(self.batch(), aux)
            self.opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
            self.opt.step()
            self.step += 1
            bar.update(1)
            if self.step % cfg.log_every == 0:
                for k, v in losses.items():
                    writer.add_scalar(f"train/{k}", float(v.detach()), self.step)
                writer.add_scalar("train/lr", lr, self.step)
                writer.add_scalar("train/aux_weight", aux, self.step)
                bar.set_postfix(
                    loss=f"{float(losses['loss'].detach()):.4f}",
                    rgb=f"{float(losses['rgb_l1'].detach()):.4f}",
                )
            if self.step % cfg.sample_every == 0 or self.step == cfg.steps:
                self.holdout(writer)
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                self.save({"train_seconds": time.time() - started})
        bar.close()
        writer.close()

    def holdout(self, writer) -> None:
        """Loss and a sample sheet (memory warp | prediction | ground truth) on held-out training seeds."""
        if not len(self.holdout_rows):
            return
        rng = np.random.default_rng(1234)
        rows = rng.choice(self.holdout_rows, 8)
        examples = [
            self.store.example(int(n), int(t), rng, self.cfg.memory_k)
            for n, t in zip(rows, rng.integers(1, self.store.frames, 8), strict=True)
        ]
        self.net.eval()
        with torch.no_grad():
            x, state = self._inputs(examples)
            out = self.net(x.to(self.device), state.to(self.device), torch.zeros(len(x), device=self.device))
        pred = out["rgb"].cpu()
        target = to_unit(np.stack([e.rgb for e in examples]))
        mse = ((pred - target) ** 2).mean(dim=(1, 2, 3)) / 4
        writer.add_scalar("holdout/psnr", float((10 * torch.log10(1 / mse)).mean()), self.step)
        sheet = torch.cat([torch.cat([x[i, 0:3], pred[i], target[i]], dim=2) for i in range(len(x))], dim=1)
        writer.add_image("holdout/warp_pred_truth", (sheet + 1) / 2, self.step)
        (self.out / "samples").mkdir(exist_ok=True)
        import cv2

        img = from_unit(sheet).numpy()
        cv2.imwrite(str(self.out / "samples" / f"step{self.step:06d}.png"), img[..., ::-1])


def start_from(net: WorldNet, start: WorldNet) -> None:
    """``net`` takes the weights of ``start`` (fine-tuning). A network with the floor channel can start from
    one without it: that channel's stem weights start at zero, so it computes what ``start`` did."""
    if (net.widths, net.patch) != (start.widths, start.patch) or (start.floor and not net.floor):
        raise ValueError(
            f"cannot start a network of widths {net.widths}, patch {net.patch}, floor {net.floor} from "
            f"one of widths {start.widths}, patch {start.patch}, floor {start.floor}"
        )
    weights = start.state_dict()
    stem = weights["stem.weight"]
    if stem.shape != net.stem.weight.shape:  # the floor channel is the last: pixel_unshuffle keeps it last
        grown = torch.zeros_like(net.stem.weight)
        grown[:, : stem.shape[1]] = stem
        weights["stem.weight"] = grown
    net.load_state_dict(weights)


def _train_semantic_head_only(net: WorldNet, opt: torch.optim.Optimizer) -> None:
    """Freeze all of ``net`` but the output head's semantic rows: the other parameters stop requiring
    gradients, the head's colour and depth rows get zero gradients, and the optimiser no weight decay (with
    zero gradients Adam's step is exactly zero, so those rows keep their values bit for bit)."""
    for param in net.parameters():
        param.requires_grad_(False)
    # output channels 0-3 are colour and inverse depth; channel c is head rows c*p*p .. (c+1)*p*p - 1
    keep = torch.arange(net.head.out_channels) // (net.patch * net.patch) >= 4
    for param in (net.head.weight, net.head.bias):
        param.requires_grad_(True)
        mask = keep.to(param.device).view(-1, *([1] * (param.dim() - 1))).to(param.dtype)
        param.register_hook(lambda grad, mask=mask: grad * mask)
    for group in opt.param_groups:
        group["weight_decay"] = 0.0


def _class_weights(
    store: TrajectoryStore, rows: np.ndarray, balance: float, device: torch.device
) -> torch.Tensor | None:
    """Semantic loss weights per class, (share of the training pixels)^-``balance`` normalised to a
    pixel-weighted mean of 1 (classes never seen get the largest weight); None for ``balance`` 0."""
    if balance == 0.0:
        return None
    sample = store.semantic[rows[:: max(1, len(rows) // 64)], ::8]  # 64 trajectories, every 8th frame
    share = np.bincount(sample.ravel(), minlength=len(SEMANTIC_CLASSES)) / sample.size
    weight = np.where(share > 0, np.maximum(share, 1e-6), share[share > 0].min()) ** -balance
    weight /= (share * weight).sum()
    return torch.tensor(weight, dtype=torch.float32, device=device)


def train_config(d: dict[str, Any]) -> TrainConfig:
    check_options(d, TrainConfig, "training")
    return TrainConfig(**d)


def main() -> None:
    import hydra
    from omegaconf import DictConfig, OmegaConf

    configs = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "model"))

    @hydra.main(version_base=None, config_path=configs, config_name="train")
    def _main(cfg: DictConfig) -> None:
        d = OmegaConf.to_container(cfg, resolve=True)
        d.pop("size", None)
        Trainer(train_config(d)).run()

    _main()


if __name__ == "__main__":
    main()
