"""PPO on DreamX/GoalView-v0 with a tiny budget: train, save the policy, evaluate it (optionally elsewhere).

python examples/train_ppo.py --backend oracle --steps 2048
python examples/train_ppo.py --backend learned --eval-backend oracle   # train in the model, test in the truth
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stable_baselines3 import PPO

from agents.policies import run_episodes
from dreamx_env.sb3 import make_sb3_env


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default=None, help="oracle | learned | constant (default: the default)")
    parser.add_argument("--eval-backend", default=None, help="evaluate here (default: --backend)")
    parser.add_argument("--steps", type=int, default=1024, help="training env steps (all envs together)")
    parser.add_argument("--n-envs", type=int, default=4)
    parser.add_argument("--episodes", type=int, default=4, help="evaluation episodes")
    parser.add_argument("--max-episode-steps", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("outputs/ppo_goal_view.zip"))
    args = parser.parse_args(argv)

    env_kwargs = {"max_episode_steps": args.max_episode_steps}  # actions: (move, look), no events by default
    backend = {"backend": args.backend} if args.backend else {}
    env = make_sb3_env("DreamX/GoalView-v0", args.n_envs, **env_kwargs, **backend)  # one server call per step
    # MultiInputPolicy: a NatureCNN for each image in the Dict observation (the frame and the goal view)
    model = PPO("MultiInputPolicy", env, n_steps=64, batch_size=128, n_epochs=4, learning_rate=2.5e-4, seed=0)
    model.learn(args.steps)
    env.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out)

    eval_backend = {"backend": args.eval_backend} if args.eval_backend else backend
    env = make_sb3_env("DreamX/GoalView-v0", min(args.n_envs, args.episodes), **env_kwargs, **eval_backend)
    stats = run_episodes(model, env, args.episodes, seed=0).summary()  # success = the env's info["success"]
    env.close()
    print(
        f"PPO {args.steps} steps -> {args.out}; on {eval_backend.get('backend', 'the default backend')}: "
        f"success rate {stats['success_rate']:.2f}, mean return {stats['mean_return']:.2f}, "
        f"mean length {stats['mean_length']:.1f} over {stats['episodes']} episodes"
    )


if __name__ == "__main__":
    main()
