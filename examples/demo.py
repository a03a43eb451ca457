"""dreamx-demo: walk the embedded default simulator with a scripted tour and save what it saw.

The tour holds keys through a world, turns the lights off and on, drops a red ball and comes back to
where it started (a revisit). It writes an animated GIF and a contact sheet (PNG) and prints per-step
numbers: reward, revisit similarity, and the simulator's frames per second.

    dreamx-demo                                  # embedded default backend, 64x64
    dreamx-demo --backend oracle --resolution 128 --out outputs/demo
    dreamx-demo --weights learned_fast --cpu-compile   # the learned backend's options, as on every CLI
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from world_model.options import add_model_arguments, model_options

# (move keys, look keys, event prompt, steps): a tour out, round a corner, and back the same way.
TOUR: list[tuple[str, str, str, int]] = [
    ("W", "", "", 6),
    ("", "J", "", 8),
    ("W", "", "", 4),
    ("", "", "turn the lights off", 1),
    ("", "L", "", 4),
    ("", "", "turn the lights on and drop a red ball", 1),
    ("", "", "", 4),
    ("", "J", "", 4),
    ("S", "", "", 4),
    ("", "L", "", 8),
    ("S", "", "", 6),
]


def run(
    backend: str | None, resolution: int, seed: int, out: Path, backend_options: dict | None = None
) -> dict[str, float]:
    import gymnasium as gym

    import dreamx_env  # noqa: F401  (registers the envs)
    from world_model.geometry import LOOK_COMBOS, MOVE_COMBOS

    kwargs = {"resolution": resolution, "scene_seed": seed, "info_frames": True}
    if backend:
        kwargs["backend"] = backend
    if backend_options:
        kwargs["backend_options"] = backend_options
    env = gym.make("DreamX/Explore-v0", **kwargs)
    frames, rewards, similarities = [], [], []
    try:
        obs, info = env.reset(seed=seed)
        frames.append(obs)
        t0, n = time.perf_counter(), 0
        for move, look, prompt, steps in TOUR:
            for _ in range(steps):
                if prompt:
                    env.unwrapped.command(prompt)
                action = np.array([MOVE_COMBOS.index(move), LOOK_COMBOS.index(look)])  # (move, look)
                obs, reward, _, _, info = env.step(action)
                frames.extend(info.get("frames", [obs]))
                rewards.append(float(reward))
                if info["is_revisit"]:
                    similarities.append(float(info["revisit_similarity"]))
                n += 1
        elapsed = time.perf_counter() - t0
        backend_name = env.unwrapped.core.backend_name
        mean_psnr = float(info["revisit_mean_psnr"])
    finally:
        env.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    _save(frames, out)
    return {
        "backend": backend_name,
        "steps": n,
        "frames": len(frames) - 1,
        "seconds": elapsed,
        "frames_per_s": (len(frames) - 1) / elapsed,
        "return": float(np.sum(rewards)),
        "revisits": len(similarities),
        "mean_revisit_similarity": float(np.mean(similarities or [np.nan])),
        "mean_revisit_psnr": mean_psnr,
    }


def _save(frames: list[np.ndarray], out: Path) -> None:
    from PIL import Image

    scale = max(1, 128 // frames[0].shape[0])
    big = [Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST) for f in frames]
    big[0].save(out.with_suffix(".gif"), save_all=True, append_images=big[1:], duration=66, loop=0)
    picks = [frames[i] for i in np.linspace(0, len(frames) - 1, 8).round().astype(int)]
    sheet = np.concatenate(picks, axis=1)
    Image.fromarray(sheet).resize((sheet.shape[1] * 2, sheet.shape[0] * 2), Image.NEAREST).save(
        out.with_suffix(".png")
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="dreamx-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backend",
        default=None,
        help="oracle | learned | constant (default: the embedded "
        "default backend, world_model.backend_registry.DEFAULT_BACKEND)",
    )
    parser.add_argument("--resolution", type=int, default=64, help="square image size in pixels")
    parser.add_argument("--seed", type=int, default=7, help="scene seed (training scenes: below 100000)")
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output path without suffix")
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    stats = run(args.backend, args.resolution, args.seed, args.out, model_options(args))
    print(f"backend: {stats['backend']}  (embedded server, started and stopped by the env)")
    print(
        f"{stats['steps']} steps, {stats['frames']} frames in {stats['seconds']:.2f} s "
        f"= {stats['frames_per_s']:.0f} frames/s through env + server"
    )
    print(
        f"return {stats['return']:.2f}; revisits {stats['revisits']}, mean similarity "
        f"{stats['mean_revisit_similarity']:.3f}, mean PSNR {stats['mean_revisit_psnr']:.1f} dB"
    )
    print(f"wrote {args.out.with_suffix('.gif')} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
