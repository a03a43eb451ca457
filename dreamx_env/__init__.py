"""DreamX-Env: a learned world simulator served over ZeroMQ, as Gymnasium environments.

``import dreamx_env`` registers ``DreamX/Explore-v0``, ``DreamX/GoalView-v0`` and ``DreamX/FindObject-v0``.
"""

from dreamx_env.registration import ENVS, register_envs

register_envs()

__all__ = ["ENVS", "register_envs"]
