"""One check of ``scene_seed`` for ``make`` and ``reset(options=...)``: same rule, the argument named."""

import gymnasium as gym
import numpy as np
import pytest

import dreamx_env  # noqa: F401

BAD = ["abc", "7", 7.9, 7.0, True, -1, 2**31, [7]]


@pytest.mark.parametrize("seed", BAD)
def test_make_refuses_a_bad_scene_seed_naming_it(seed):
    with pytest.raises(ValueError, match=r"^scene_seed must be an integer in \[0, 2147483647\], got"):
        gym.make("DreamX/Explore-v0", backend="constant", server="thread", scene_seed=seed)


def test_reset_refuses_the_same_seeds_and_both_take_numpy_integers():
    env = gym.make("DreamX/Explore-v0", backend="constant", server="thread", scene_seed=np.int64(5))
    try:
        assert env.reset(seed=0)[1]["scene_seed"] == 5
        for seed in BAD:
            with pytest.raises(
                ValueError, match=r"^reset option scene_seed must be an integer in \[0, 2147483647\]"
            ):
                env.reset(options={"scene_seed": seed})
        assert env.reset(options={"scene_seed": np.int32(9)})[1]["scene_seed"] == 9
    finally:
        env.close()
