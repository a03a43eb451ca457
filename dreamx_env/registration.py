"""Gymnasium registration of the DreamX environments (``import dreamx_env`` runs it).

env = gymnasium.make("DreamX/Explore-v0", backend="oracle")
envs = gymnasium.make_vec("DreamX/Explore-v0", num_envs=8, vectorization_mode="vector_entry_point")
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

# id -> (module, single env class, vector env class, max_episode_steps)
ENVS: dict[str, tuple[str, str, str, int]] = {
    "DreamX/Explore-v0": ("dreamx_env.envs.explore", "ExploreEnv", "ExploreVectorEnv", 500),
    "DreamX/GoalView-v0": ("dreamx_env.envs.goal_view", "GoalViewEnv", "GoalViewVectorEnv", 200),
    "DreamX/FindObject-v0": ("dreamx_env.envs.find_object", "FindObjectEnv", "FindObjectVectorEnv", 200),
}


def register_envs() -> None:
    for env_id, (module, single, vector, steps) in ENVS.items():
        if env_id not in registry:
            register(
                id=env_id,
                entry_point=f"{module}:{single}",
                vector_entry_point=f"{module}:{vector}",
                max_episode_steps=steps,
            )
