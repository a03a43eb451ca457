"""Quickstart: a random agent in DreamX/Explore-v0, saved as a video.

python examples/quickstart.py                       # embedded default backend
python examples/quickstart.py --backend oracle --steps 100 --out outputs/quickstart.mp4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import gymnasium as gym
import numpy as np

import dreamx_env  # noqa: F401  (registers the DreamX envs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default=None, help="oracle | learned | constant (default: the default)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs/quickstart.mp4"))
    args = parser.parse_args(argv)

    kwargs = {"backend": args.backend} if args.backend else {}
    env = gym.make("DreamX/Explore-v0", info_frames=True, **kwargs)  # info["frames"]: all K frames of a step
    env.action_space.seed(args.seed)
    obs, info = env.reset(seed=args.seed)
    frames, total = [obs], 0.0
    for _ in range(args.steps):
        action = env.action_space.sample()  # (move, look); world events need event_actions=True
        obs, reward, terminated, truncated, info = env.step(action)
        frames.extend(info["frames"])
        total += reward
        if terminated or truncated:
            obs, info = env.reset()
    env.close()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    video = cv2.VideoWriter(str(args.out), cv2.VideoWriter_fourcc(*"mp4v"), 15, (4 * w, 4 * h))
    for frame in frames:
        video.write(np.ascontiguousarray(frame.repeat(4, 0).repeat(4, 1)[..., ::-1]))  # RGB -> BGR
    video.release()
    print(f"{args.steps} random steps, return {total:.2f}, coverage {info['coverage']} views -> {args.out}")


if __name__ == "__main__":
    main()
