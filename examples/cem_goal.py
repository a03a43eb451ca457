"""CEM planning on DreamX/GoalView-v0: imagine action sequences in forks of the episode, act with the best.

python examples/cem_goal.py --backend oracle --steps 40
"""

from __future__ import annotations

import argparse

import gymnasium as gym

import dreamx_env  # noqa: F401  (registers the DreamX envs)
from agents.planners import CEMPlanner, PlannerConfig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default=None, help="oracle | learned | constant (default: the default)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--population", type=int, default=16)
    parser.add_argument("--horizon", type=int, default=4)
    args = parser.parse_args(argv)

    kwargs = {"backend": args.backend} if args.backend else {}
    env = gym.make("DreamX/GoalView-v0", **kwargs)
    obs, info = env.reset(seed=args.seed)
    config = PlannerConfig(horizon=args.horizon, population=args.population, iterations=2, elites=4)
    planner = CEMPlanner(env.action_space, config)
    for step in range(args.steps):
        plan = planner.plan(env)  # the real episode is untouched by the imagined rollouts
        obs, reward, terminated, truncated, info = env.step(plan.action)
        print(
            f"step {step:3d}  action {plan.action}  imagined return {plan.value:6.2f}  "
            f"distance {info['goal_distance_m']:5.2f} m  angle {info['goal_angle_deg']:5.1f} deg  "
            f"planning {1000 * plan.seconds:.0f} ms"
        )
        if terminated or truncated:
            break
    env.close()
    print("success" if info["success"] else "not there yet")


if __name__ == "__main__":
    main()
