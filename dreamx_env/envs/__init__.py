"""DreamX Gymnasium environments: one task per file, each with a single and a native vector env."""

from dreamx_env.envs.base import DreamXEnv, DreamXVectorEnv
from dreamx_env.envs.explore import ExploreEnv, ExploreVectorEnv
from dreamx_env.envs.find_object import FindObjectEnv, FindObjectVectorEnv
from dreamx_env.envs.goal_view import GoalViewEnv, GoalViewVectorEnv

__all__ = [
    "DreamXEnv",
    "DreamXVectorEnv",
    "ExploreEnv",
    "ExploreVectorEnv",
    "FindObjectEnv",
    "FindObjectVectorEnv",
    "GoalViewEnv",
    "GoalViewVectorEnv",
]
