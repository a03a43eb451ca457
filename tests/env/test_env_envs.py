"""The Gymnasium envs: API checks, vector env, seeding, events, observations, revisits."""

import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import dreamx_env
from dreamx_env.envs import DreamXVectorEnv
from dreamx_env.launcher import launch
from world_model.events import EVENT_MENU
from world_model.geometry import LOOK_COMBOS, MOVE_COMBOS

IDS = list(dreamx_env.ENVS)
TURN_LEFT = np.array([0, LOOK_COMBOS.index("J")])
STILL = np.array([0, 0])


def count_requests(core) -> list:
    calls = []
    original = core.client.request

    def spy(type, *args, **kwargs):
        calls.append(type.name)
        return original(type, *args, **kwargs)

    core.client.request = spy
    return calls


@pytest.mark.parametrize("env_id", IDS)
def test_gymnasium_and_sb3_check_env(make, env_id):
    env = make(env_id)
    check_env(env.unwrapped, skip_render_check=False)
    sb3_check_env(env.unwrapped, warn=True)


@pytest.mark.parametrize("env_id", IDS)
def test_make_vec_uses_the_native_vector_env_with_one_server_call_per_step(make, env_id):
    envs = make(env_id, vector=3, max_episode_steps=3)
    assert isinstance(envs.unwrapped, DreamXVectorEnv)
    obs, _ = envs.reset(seed=0)
    assert envs.observation_space.contains(obs)
    calls = count_requests(envs.unwrapped.core)
    for step in range(1, 6):
        obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
        assert envs.observation_space.contains(obs) and reward.shape == (3,)
        if step == 3:
            assert (truncated | terminated).all()
        if step == 4:  # NEXT_STEP autoreset: the finished episodes restart inside this step's call
            assert info["reset"].all() and (info["episode_step"][info["_episode_step"]] == 0).all()
    assert calls == ["STEP"] * 5


def test_same_step_autoreset_reports_final_observations(make):
    envs = make("DreamX/Explore-v0", vector=2, max_episode_steps=2, autoreset_mode=AutoresetMode.SAME_STEP)
    envs.reset(seed=3)
    envs.step(np.stack([STILL, STILL]))
    obs, _, _, truncated, info = envs.step(np.stack([TURN_LEFT, TURN_LEFT]))
    assert truncated.all() and info["_final_obs"].all()
    assert not np.array_equal(info["final_obs"][0], obs[0])  # the new episode starts from the start pose
    assert (info["episode_step"] == 0).all()


def test_seeded_resets_are_deterministic_and_use_training_scenes(make):
    a, b = make("DreamX/Explore-v0"), make("DreamX/Explore-v0")
    obs_a, info_a = a.reset(seed=11)
    obs_b, info_b = b.reset(seed=11)
    assert np.array_equal(obs_a, obs_b) and info_a["scene_seed"] == info_b["scene_seed"]
    for _ in range(3):
        step_a, step_b = a.step(TURN_LEFT), b.step(TURN_LEFT)
        assert np.array_equal(step_a[0], step_b[0]) and step_a[1] == step_b[1]
    seeds = {a.reset(seed=s)[1]["scene_seed"] for s in range(40)}
    assert len(seeds) > 30 and max(seeds) < 100_000  # never the validation split 100000-199999
    fixed = make("DreamX/Explore-v0", scene_seed=150_000)  # explicit evaluation scenes are allowed
    assert fixed.reset(seed=0)[1]["scene_seed"] == 150_000


def test_invalid_action_raises_value_error_naming_the_space(make):
    env = make("DreamX/Explore-v0", action_set="discrete")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action space Discrete\(11\)"):
        env.step(42)
    envs = make("DreamX/Explore-v0", vector=2)
    envs.reset(seed=0)
    with pytest.raises(ValueError, match=r"action space Box\(0, 8, \(2, 2\), int64\)"):  # the batched space
        envs.step(np.zeros((3, 3), np.int64))


@pytest.mark.parametrize("env_id", IDS)
def test_event_actions_are_off_unless_asked(make, env_id):
    """(move, look) by default, so a policy sampling actions changes no world state; event_actions=True
    adds the event menu, whose entries reach the world."""
    assert make(env_id).action_space == spaces.MultiDiscrete([9, 9])
    env = make(env_id, event_actions=True)
    assert env.action_space == spaces.MultiDiscrete([9, 9, 9])
    env.reset(seed=0)
    assert env.step(np.array([0, 0, EVENT_MENU.index("lights off")]))[-1]["events"] == [
        "lights(room state=off)"
    ]


def test_command_sends_a_text_event_to_the_next_step(make):
    env = make("DreamX/Explore-v0")
    obs, _ = env.reset(seed=2)
    bright = env.step(STILL)[0].astype(float).mean()
    records = env.unwrapped.command("turn the lights off")
    assert [r.predicate for r in records] == ["lights"]
    obs, _, _, _, info = env.step(STILL)
    assert info["events"] == ["lights(room state=off)"]
    assert obs.astype(float).mean() < 0.8 * bright
    assert env.step(STILL)[4]["events"] == []  # sent once
    with pytest.raises(ValueError, match="predicates"):
        env.unwrapped.command("summon a dragon")


def test_a_command_the_world_cannot_carry_out_is_refused_and_nothing_is_lost(make):
    envs = make("DreamX/Explore-v0", vector=2, backend="oracle", scene_seed=5)  # scene 5 has no box
    _, info = envs.reset(seed=0)
    envs.unwrapped.command("turn the lights off", env_index=1)
    envs.unwrapped.command("push the nearest box", env_index=0)
    with pytest.raises(ValueError, match="row 0, step 0: no box to target in this scene.*did not step"):
        envs.step(np.stack([TURN_LEFT, TURN_LEFT]))
    _, _, _, _, after = envs.step(np.stack([STILL, STILL]))  # the queue was dropped and the envs go on
    assert np.allclose(after["pose"], info["pose"]) and list(after["events"]) == [[], []]


def test_dict_observations_with_depth_and_semantics(make):
    env = make("DreamX/FindObject-v0", obs_keys=("rgb", "depth", "semantic"), resolution=(48, 64))
    obs, _ = env.reset(seed=4)
    assert set(obs) == {"rgb", "depth", "semantic", "target"}
    assert obs["rgb"].shape == (48, 64, 3) and obs["depth"].shape == (48, 64)
    assert env.observation_space.contains(obs) and (obs["depth"] > 0).any()
    obs, *_ = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)


def test_turning_a_full_circle_is_a_consistent_revisit(make):
    # 30 steps x 4 frames x 3 degrees = 360 degrees, in place: the same view, 30 steps later
    env = make("DreamX/Explore-v0", reward={"coverage": 0.0, "revisit": 1.0})
    env.reset(seed=5)
    infos = [env.step(TURN_LEFT)[-1] for _ in range(29)]
    assert not any(i["is_revisit"] for i in infos)
    obs, reward, *_, info = env.step(TURN_LEFT)
    assert info["is_revisit"] and info["revisit_psnr"] > 30 and info["revisit_similarity"] > 0.8
    assert reward == pytest.approx(info["revisit_similarity"] - 0.5)


def test_moving_changes_the_view_and_pose(make):
    env = make("DreamX/Explore-v0")
    obs0, info0 = env.reset(seed=6)
    obs1, *_, info1 = env.step(np.array([MOVE_COMBOS.index("W"), LOOK_COMBOS.index("L")]))
    assert not np.array_equal(obs0, obs1)
    assert not np.allclose(info0["pose"], info1["pose"])
    assert info1["timing"].server_ms > 0


def test_shared_server_resolution_must_match(make):
    with launch(backend="constant", mode="thread", backend_kwargs={"height": 32, "width": 32}) as server:
        with pytest.raises(ValueError, match="renders 32x32"):
            make("DreamX/Explore-v0", backend="constant", server=server.address)
        env = make("DreamX/Explore-v0", backend="constant", server=server.address, resolution=32)
        assert env.reset(seed=0)[0].shape == (32, 32, 3)


def test_a_named_backend_must_be_the_one_the_server_runs(make):
    with launch(backend="constant", mode="thread") as server:
        for asked in ("learned", "oracle"):
            with pytest.raises(ValueError, match=f"backend='{asked}' was asked but .* runs the 'constant'"):
                make("DreamX/Explore-v0", backend=asked, server=server.address)
        env = make("DreamX/Explore-v0", backend=None, server=server.address)  # the server's backend
        assert env.unwrapped.core.backend_name == "constant" and env.reset(seed=0)[0].shape == (64, 64, 3)


def test_a_closed_env_says_it_is_closed(make):
    from dreamx_env.planning import imagine

    env = make("DreamX/Explore-v0")
    with pytest.raises(RuntimeError, match=r"call reset\(\) before step\(\)"):
        env.unwrapped.step(STILL)
    env.reset(seed=0)
    env.close()
    for call in (
        lambda: env.step(STILL),
        lambda: env.reset(seed=0),
        lambda: imagine(env, np.zeros((1, 1, 2))),
    ):
        with pytest.raises(RuntimeError, match=r"on a closed env.*make a new env"):
            call()
    envs = make("DreamX/Explore-v0", vector=2)
    envs.reset(seed=0)
    envs.close()
    with pytest.raises(RuntimeError, match=r"step\(\) on a closed env"):
        envs.step(np.stack([STILL, STILL]))


def test_unknown_keyword_is_refused(make):
    with pytest.raises(TypeError, match="unknown keyword argument"):
        make("DreamX/Explore-v0", colour="red")


def test_reset_options_pick_a_scene_and_are_checked(make):
    env = make("DreamX/Explore-v0")
    assert env.reset(seed=0, options={"scene_seed": 42})[1]["scene_seed"] == 42
    assert env.reset(seed=0)[1]["scene_seed"] != 42 or env.reset(seed=1)[1]["scene_seed"] != 42
    with pytest.raises(ValueError, match=r"unknown reset option\(s\) \['seed'\]"):
        env.reset(options={"seed": 3})
    with pytest.raises(ValueError, match=r"first_frame must be uint8 \[64, 64, 3\]"):
        env.reset(options={"first_frame": np.zeros((32, 32, 3), np.uint8)})
    goal = make("DreamX/GoalView-v0")
    with pytest.raises(ValueError, match="goal_view task cannot start from an image"):
        goal.reset(options={"first_frame": np.zeros((64, 64, 3), np.uint8)})
    vec = make("DreamX/Explore-v0", vector=2)
    with pytest.raises(ValueError, match="need one image or 2"):
        vec.reset(options={"first_frame": np.zeros((3, 64, 64, 3), np.uint8)})
    _, infos = vec.reset(seed=0, options={"scene_seed": 7})
    assert list(infos["scene_seed"]) == [7, 7]
