"""Train the ``ObjectFinder`` on the engine's frames (``dreamx-generate`` shards of the training split).

Every ``--stride``-th frame of every trajectory is used; the last shard is held out and scored (per-pixel
object recall and precision, and whether the nearest object's pixel gets its right shape). The loss is
cross-entropy with each class weighted by the inverse square root of its pixel share, so the objects, a few
percent of the pixels, are not drowned by "none". Frames are flipped, re-lit (x0.5-1.3) and blurred at
random, because the finder reads the model's own, softer frames. Resumes from ``--out-dir``'s state.

    python -m world_model.model.train_finder --data data/engine/train --steps 3000 --out-dir runs/finder
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.nn import functional as F
from tqdm import tqdm

from world_model.model.object_finder import FINDER_CLASSES, TO_FINDER, ObjectFinder, save_finder


def load_frames(data: Path, stride: int) -> tuple[np.ndarray, ...]:
    """(train rgb, train labels, held-out rgb, held-out labels, plus depth of the held-out frames) from
    the shards of ``data``: rgb ``[N, H, W, 3]`` uint8, finder labels ``[N, H, W]`` uint8."""
    manifest = json.loads((data / "manifest.json").read_text())
    shards = [data / s["file"] for s in manifest["shards"]]
    rgb, lab, depth = [], [], []
    for shard in tqdm(shards, desc="loading shards"):
        with np.load(shard) as z:
            rgb.append(z["rgb"][:, ::stride].reshape(-1, *z["rgb"].shape[2:]))
            lab.append(
                TO_FINDER[z["semantic"][:, ::stride]].astype(np.uint8).reshape(-1, *z["rgb"].shape[2:4])
            )
            depth.append(
                z["depth"][:, ::stride].reshape(-1, *z["rgb"].shape[2:4]) if shard == shards[-1] else None
            )
    return np.concatenate(rgb[:-1]), np.concatenate(lab[:-1]), rgb[-1], lab[-1], depth[-1]


def augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Colour ``x [B, 3, H, W]`` in [0, 1]: re-lit per frame and blurred in half the batch (flips are done
    with the labels)."""
    x = x * torch.from_numpy(rng.uniform(0.5, 1.3, (len(x), 1, 1, 1)).astype(np.float32))
    blur = torch.tensor([1.0, 2.0, 1.0]) / 4
    kernel = (blur[:, None] * blur[None, :]).expand(3, 1, 3, 3)
    soft = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    pick = torch.from_numpy(rng.random(len(x)) < 0.5)[:, None, None, None]
    return torch.where(pick, soft, x).clamp(0, 1)


def score(finder: ObjectFinder, rgb: np.ndarray, lab: np.ndarray, depth: np.ndarray) -> dict[str, float]:
    """Per-pixel object recall and precision over held-out frames, and the share of frames with an object
    where the finder's label at the nearest object pixel is that object's shape."""
    finder.eval()
    tp = fp = fn = 0
    right, frames = 0, 0
    with torch.no_grad():
        for i in range(0, len(rgb), 256):
            x = torch.from_numpy(rgb[i : i + 256]).permute(0, 3, 1, 2).float() / 255
            pred = finder(x * 2 - 1).argmax(1).numpy()
            true = lab[i : i + 256]
            tp += int(((pred > 0) & (true > 0)).sum())
            fp += int(((pred > 0) & (true == 0)).sum())
            fn += int(((pred == 0) & (true > 0)).sum())
            d = depth[i : i + 256].astype(np.float32)
            for p, t, dd in zip(pred, true, d, strict=True):
                if (t > 0).any():
                    frames += 1
                    k = np.argmin(np.where(t > 0, dd, np.inf))
                    right += int(p.flat[k] == t.flat[k])
    finder.train()
    return {
        "recall": tp / max(tp + fn, 1),
        "precision": tp / max(tp + fp, 1),
        "nearest_right_shape": right / max(frames, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(
        prog="python -m world_model.model.train_finder", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "--data", default="data/engine/train", help="dreamx-generate output (default: %(default)s)"
    )
    p.add_argument(
        "--out-dir", default="runs/finder", help="state and weights go here (default: %(default)s)"
    )
    p.add_argument("--steps", type=int, default=3000, help="optimizer steps (default: %(default)s)")
    p.add_argument("--batch", type=int, default=32, help="frames per step (default: %(default)s)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default: %(default)s)")
    p.add_argument("--stride", type=int, default=4, help="use every n-th frame (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    args = p.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    rgb, lab, held_rgb, held_lab, held_depth = load_frames(Path(args.data), args.stride)
    share = np.bincount(lab.ravel(), minlength=len(FINDER_CLASSES)) / lab.size
    weight = torch.from_numpy(np.minimum((share[0] / np.maximum(share, 1e-9)) ** 0.5, 30.0)).float()
    finder = ObjectFinder()
    opt = torch.optim.AdamW(finder.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps, pct_start=0.05)
    state_path, start = out / "state.safetensors", 0
    if state_path.exists():
        tensors = load_file(str(state_path))
        finder.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        start = int(tensors["step"])
        for i, p_ in enumerate(finder.parameters()):
            if f"opt.{i}.exp_avg" in tensors:
                opt.state[p_] = {k: tensors[f"opt.{i}.{k}"] for k in ("exp_avg", "exp_avg_sq")}
                opt.state[p_]["step"] = torch.tensor(float(start))
        for _ in range(start):
            sched.step()
    rng = np.random.default_rng([args.seed, start])
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="finder")
    for step in bar:
        idx = rng.integers(0, len(rgb), args.batch)
        x = torch.from_numpy(rgb[idx]).permute(0, 3, 1, 2).float() / 255
        y = torch.from_numpy(lab[idx].astype(np.int64))
        if rng.random() < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        loss = F.cross_entropy(finder(augment(x, rng) * 2 - 1), y, weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if (step + 1) % 250 == 0 or step + 1 == args.steps:
            tensors = {f"net.{k}": v.detach().clone() for k, v in finder.state_dict().items()}
            for i, p_ in enumerate(finder.parameters()):
                for k in ("exp_avg", "exp_avg_sq"):
                    if k in opt.state.get(p_, {}):
                        tensors[f"opt.{i}.{k}"] = opt.state[p_][k].clone()
            tensors["step"] = torch.tensor(step + 1)
            save_file(tensors, str(out / "state.tmp"))
            (out / "state.tmp").replace(state_path)
    scores = score(finder, held_rgb, held_lab, held_depth)
    print(json.dumps(scores))
    meta = {"steps": str(args.steps), "scores": json.dumps(scores), "command": json.dumps(vars(args))}
    save_finder(out / "object_finder.safetensors", finder.eval(), meta)
    print(f"weights: {out / 'object_finder.safetensors'}")


if __name__ == "__main__":
    main()
