"""DreamX Gymnasium environments: one task per file, each with a single and a native vector env."""

from dreamx_env.envs.base import DreamXEnv, DreamXVectorEnv
from dreamx_env.envs.explore import ExploreEnv, ExploreVectorEnv

__all__ = ["DreamXEnv", "DreamXVectorEnv", "ExploreEnv", "ExploreVectorEnv"]
