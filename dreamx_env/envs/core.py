"""The batched core shared by ``DreamXEnv`` and ``DreamXVectorEnv``: one simulator connection, B sessions,
and exactly one server call per batched step (resets of finished episodes ride along in the same STEP);
with ``lanes`` > 1, one connection and one call per lane, sent at once (``dreamx_env.lanes``)."""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium import spaces

from dreamx_env.envs.actions import EVENT_RECORDS, ActionMapper, chunk_poses, level_pose
from dreamx_env.envs.task import EpisodeState, Frame, RewardConfig, Task, Timing, new_episode, score_step
from dreamx_env.lanes import LanedClient
from dreamx_env.launcher import EmbeddedServer, LaunchConfig, embedded_cluster
from dreamx_env.rewards import CoverageConfig, RevisitConfig
from dreamx_env.server_pool import POOL, SharedServer
from world_model.backend_registry import DEFAULT_BACKEND
from world_model.events import EventRecord, parse_prompt, validate
from world_model.geometry import KeyMap, invert_pose
from world_model.semantics import SEMANTIC_CLASSES
from world_model.serve.cluster import LocalCluster
from world_model.splits import SPLITS
from world_model.wire.client import (
    ClientConfig,
    OpenResult,
    ServerError,
    ServerUnavailable,
    SimulatorClient,
    StepResult,
)
from world_model.wire.protocol import ErrorCode
from world_model.wire.requests import SceneSpec, check_scene_seed

# training seeds are below 100000; 100000-199999 is the validation split, never a default (world_model.splits)
TRAIN_SEEDS: tuple[int, int] = SPLITS["train"]
VALIDATION_SEEDS: tuple[int, int] = SPLITS["validation"]
OBS_KEYS: tuple[str, ...] = ("rgb", "depth", "semantic")
EMBEDDED = (None, "subprocess", "thread", "inproc")  # values of `server` that start a server of our own
GONE = (ErrorCode.UNKNOWN_SESSION, ErrorCode.WORKER_LOST)  # the env's sessions no longer exist on the server


@dataclass
class EnvConfig:
    """Keyword arguments shared by every DreamX env (see the env docstrings for the user manual)."""

    # An embedded server runs this backend (None: DEFAULT_BACKEND); a remote one runs its own, and a name
    # given here must match it.
    backend: str | None = None
    server: Any = None  # None: embedded subprocess; "thread": in-process; "tcp://..."/"ipc://...": remote
    scene_seed: int | None = None  # fixed scene, or None: a new training scene per episode
    scene_seed_range: tuple[int, int] | None = None  # None: the backend's banked seeds, else TRAIN_SEEDS
    resolution: tuple[int, int] = (64, 64)
    vfov_deg: float = 70.0
    frames_per_step: int = 4
    action_set: str = "multi"
    event_actions: bool = False  # True: the action space has an event-menu entry (see the env docstrings)
    obs_keys: tuple[str, ...] = ("rgb",)
    render_mode: str | None = None
    reward: RewardConfig | None = None  # None: the task's defaults
    keymap: KeyMap = field(default_factory=KeyMap)
    revisit: RevisitConfig = field(default_factory=RevisitConfig)
    coverage: CoverageConfig = field(default_factory=CoverageConfig)
    info_frames: bool = False  # put all K frames of each chunk in info["frames"]
    depth_max_m: float = 20.0
    timeout_s: float = 5.0
    server_public_key: str | None = None  # z85 CURVE key of a remote server (server="tcp://...")
    curve_public_key: str | None = None  # this env's keypair, for a server that lists its clients' keys;
    curve_secret_key: str | None = None  #   None: a fresh pair
    lanes: int = 1  # >1: the sessions in this many lanes stepped at once (dreamx_env.lanes; the embedded
    # server becomes a broker and one worker per lane, each with cores / lanes threads)
    share_server: bool = True  # embedded: one server for this process's envs with the same settings
    # (dreamx_env.server_pool); False: a server of this env's own
    server_options: dict[str, Any] = field(default_factory=dict)  # embedded ServerConfig fields
    backend_options: dict[str, Any] = field(default_factory=dict)  # embedded backend config fields

    @classmethod
    def build(cls, task: type[Task], **kwargs: Any) -> tuple[EnvConfig, RewardConfig]:
        """From user keyword arguments (dicts for nested configs), validated, plus the reward weights."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unknown keyword argument(s) {unknown}; DreamX envs accept {sorted(known)}")
        cfg = cls(**kwargs)
        if cfg.scene_seed is not None:
            cfg.scene_seed = check_scene_seed(cfg.scene_seed, "scene_seed")
        keys = (cfg.server_public_key, cfg.curve_public_key, cfg.curve_secret_key)
        if any(k is not None for k in keys) and cfg.server in EMBEDDED:
            raise ValueError(
                "server_public_key, curve_public_key and curve_secret_key are for a remote CURVE server: "
                f"pass its address as server='tcp://HOST:PORT' (got server={cfg.server!r})"
            )
        if isinstance(cfg.resolution, int):
            cfg.resolution = (cfg.resolution, cfg.resolution)
        cfg.resolution = tuple(int(r) for r in cfg.resolution)
        cfg.obs_keys = (cfg.obs_keys,) if isinstance(cfg.obs_keys, str) else tuple(cfg.obs_keys)
        if "rgb" not in cfg.obs_keys or not set(cfg.obs_keys) <= set(OBS_KEYS):
            raise ValueError(f"obs_keys must include 'rgb' and be a subset of {OBS_KEYS}, got {cfg.obs_keys}")
        for name, sub in (("keymap", KeyMap), ("revisit", RevisitConfig), ("coverage", CoverageConfig)):
            if isinstance(getattr(cfg, name), dict):
                setattr(cfg, name, sub(**getattr(cfg, name)))
        lo, hi = cfg.scene_seed_range or TRAIN_SEEDS
        if not 0 <= lo < hi <= 2**31 - 1:
            raise ValueError(
                f"scene_seed_range must satisfy 0 <= lo < hi < 2**31, got {cfg.scene_seed_range}"
            )
        if cfg.frames_per_step < 1:
            raise ValueError(f"frames_per_step must be >= 1, got {cfg.frames_per_step}")
        weights = task.default_reward
        if isinstance(cfg.reward, dict):
            weights = dataclasses.replace(weights, **cfg.reward)
        elif cfg.reward is not None:
            weights = cfg.reward
        return cfg, weights


RESET_OPTIONS = {
    "scene_seed": "int: the scene to open this episode (overrides the env's scene_seed)",
    "first_frame": "uint8 [H, W, 3] at the env's resolution: start from this image (Explore)",
}


def check_reset_options(options: dict | None, resolution: tuple[int, int], task: Task) -> dict:
    """``reset(options=...)`` checked: known keys, a first frame of the env's size; clear errors otherwise."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(RESET_OPTIONS))
    if unknown:
        raise ValueError(f"unknown reset option(s) {unknown}; options are {RESET_OPTIONS}")
    if options.get("scene_seed") is not None:
        options["scene_seed"] = check_scene_seed(options["scene_seed"], "reset option scene_seed")
    if options.get("first_frame") is not None:
        image = np.asarray(options["first_frame"])
        h, w = resolution
        if image.shape != (h, w, 3) or image.dtype != np.uint8:
            raise ValueError(
                f"reset option first_frame must be uint8 [{h}, {w}, 3] (the env's resolution), "
                f"got {image.dtype} {list(image.shape)}"
            )
        if not task.starts_from_images:
            raise ValueError(f"the {task.name} task cannot start from an image: it has no goal or objects")
        options["first_frame"] = image
    return options


class DreamXCore:
    """B sessions of one task on one simulator server."""

    def __init__(self, config: EnvConfig, weights: RewardConfig, task: Task, num_envs: int) -> None:
        self.config, self.weights, self.task, self.num_envs = config, weights, task, num_envs
        self.mapper = ActionMapper(config.action_set, config.keymap, config.event_actions)
        self.embedded: EmbeddedServer | LocalCluster | SharedServer | None = None
        self.sessions: list[int] | None = None
        h, w = config.resolution
        if not 1 <= config.lanes <= num_envs:
            raise ValueError(f"lanes must be between 1 and num_envs={num_envs}, got {config.lanes}")
        if config.server in EMBEDDED:
            self.embedded = start_embedded(config)
            address = self.embedded.address
        else:
            address = getattr(config.server, "address", config.server)
        client_config = ClientConfig(
            timeout_s=config.timeout_s,
            server_public_key=config.server_public_key,
            curve_public_key=config.curve_public_key,
            curve_secret_key=config.curve_secret_key,
        )
        if config.lanes > 1:
            self.client = LanedClient(address, config.lanes, client_config)
        else:
            self.client = SimulatorClient(address, client_config)
        try:
            server_info = self.client.info()
        except Exception:
            self.close()
            raise
        info = server_info["backend"]
        if config.backend not in (None, info["name"]):
            self.close()
            raise ValueError(
                f"backend={config.backend!r} was asked but the server at {address} runs the {info['name']!r} "
                f"backend; leave backend out to use the server's, or pass server=None (an embedded "
                f"{config.backend!r} server) or the address of a {config.backend!r} server"
            )
        # events one step may carry on this server, less those the action's event menu may add
        menu = max(len(r) for r in EVENT_RECORDS) if config.event_actions else 0
        self.max_command_events = server_info["limits"]["max_events_per_step"] - menu
        if (info["height"], info["width"]) != (h, w):
            self.close()
            raise ValueError(
                f"the server at {address} renders {info['height']}x{info['width']} but "
                f"resolution={config.resolution} was asked; match them or start another server"
            )
        self.backend_name = info["name"]
        # the learned backend starts banked scenes without MuJoCo: draw training scenes from those by default
        banked = (info.get("extra") or {}).get("banked_seeds")
        self.seed_range = tuple(config.scene_seed_range or banked or TRAIN_SEEDS)
        self.outputs = tuple(k for k in OBS_KEYS if k in set(config.obs_keys) | set(task.needs) | {"rgb"})
        obs = {"rgb": spaces.Box(0, 255, (h, w, 3), np.uint8)}
        if "depth" in config.obs_keys:
            obs["depth"] = spaces.Box(0.0, config.depth_max_m, (h, w), np.float32)
        if "semantic" in config.obs_keys:
            obs["semantic"] = spaces.Box(0, len(SEMANTIC_CLASSES) - 1, (h, w), np.uint8)
        obs.update(task.observation_spaces())
        self.observation_space = obs["rgb"] if len(obs) == 1 else spaces.Dict(obs)
        self.states: list[EpisodeState | None] = [None] * num_envs
        self.frames: list[Frame | None] = [None] * num_envs
        self.rngs = [np.random.default_rng() for _ in range(num_envs)]
        self.queued: list[list[EventRecord]] = [[] for _ in range(num_envs)]
        self.server_ms = self.step_ms = 0.0
        self.requests: list[dict[str, Any]] = [{} for _ in range(num_envs)]

    # -- episodes -------------------------------------------------------------------------------------------
    def scene_spec(self, i: int, seed: int | None, options: dict | None = None) -> SceneSpec:
        options = check_reset_options(options, self.config.resolution, self.task)
        if seed is not None:
            self.rngs[i] = np.random.default_rng(seed)
        rng = self.rngs[i]
        lo, hi = self.seed_range
        scene_seed = options.get("scene_seed", self.config.scene_seed)
        if scene_seed is None:
            scene_seed = int(rng.integers(lo, hi))
        self.requests[i] = self.task.scene_request(rng)
        return SceneSpec(int(scene_seed), **self.requests[i], first_frame=options.get("first_frame"))

    def require_open(self, call: str) -> None:
        """Refuse ``call`` (``"step"``, ``"imagine"``, ...) on a closed env with a message saying so."""
        if self.client.closed:
            raise RuntimeError(
                f"{call}() on a closed env: close() ended its connection to the simulator (and let go of "
                "its embedded server); make a new env"
            )

    def require_episode(self, call: str) -> None:
        """Refuse ``call`` before the first ``reset()`` or after ``close()``, saying which."""
        self.require_open(call)
        if self.sessions is None:
            raise RuntimeError(f"call reset() before {call}()")

    def reset(
        self, rows: list[int], seeds: list[int | None], options: list[dict | None] | None = None
    ) -> None:
        """Start new episodes in ``rows``; ``options[j]`` are ``reset(options=...)`` (``RESET_OPTIONS``)."""
        self.require_open("reset")
        options = options or [None] * len(rows)
        specs = [self.scene_spec(i, s, o) for i, s, o in zip(rows, seeds, options, strict=True)]
        t0 = time.perf_counter()
        if self.sessions is None:
            assert rows == list(range(self.num_envs)), "the first reset opens every env"
            try:
                res = self.client.open(specs, self.outputs)
            except ServerError as exc:
                raise self._explain_full(exc) from None
            self.sessions = res.sessions
        else:
            try:
                res = self.client.reset([self.sessions[i] for i in rows], specs, self.outputs)
            except ServerError as exc:
                if exc.code not in GONE:
                    raise
                if rows != list(range(self.num_envs)):
                    raise _gone(exc) from None
                res = self._reopen(specs, exc)
        self.server_ms = self.step_ms = (time.perf_counter() - t0) * 1000
        views = res.frames.get("view_rgb")
        for j, i in enumerate(rows):
            self._begin(i, res.scenes[j], self._opened_frame(res, j), None if views is None else views[j])

    def _explain_full(self, exc: ServerError) -> ServerError:
        """``exc``, saying so when a shared embedded server is full with other envs' sessions."""
        if exc.code != ErrorCode.TOO_MANY_SESSIONS or getattr(self.embedded, "users", 1) < 2:
            return exc
        text = (
            f"{exc.message}. This embedded server is shared by {self.embedded.users} envs of this process; "
            "pass share_server=False for a server of this env's own, or server_options={'max_sessions': N}"
        )
        return ServerError(exc.code, text, exc.address, exc.details)

    def _reopen(self, specs: list[SceneSpec], exc: ServerError) -> OpenResult:
        """Open fresh sessions for every env: the old ones are gone (closed after the server's idle
        timeout, or lost with their worker), and a RESET of them would fail forever."""
        old, self.sessions = self.sessions, None
        warnings.warn(
            f"the env's sessions {old} are gone on the simulator server at {exc.address} ({exc.code}: "
            f"{exc.message}); reset() opened new ones",
            RuntimeWarning,
            stacklevel=4,
        )
        try:  # free any the server (a lane's live worker) still holds
            self.client.close_sessions(old, timeout_s=1.0)
        except (ServerError, ServerUnavailable):
            pass
        res = self.client.open(specs, self.outputs)
        self.sessions = res.sessions
        return res

    def relocate(self, i: int, pose: np.ndarray) -> None:
        """Put row ``i``'s camera at ``pose`` in its scene (a RESET with ``relocate``: the session keeps what
        it has seen where the backend can), the episode goes on, and the task's progress is re-measured from
        ``pose`` without a reward (``dreamx_env.planning.relocate``)."""
        self.require_episode("relocate")
        st = self.states[i]
        spec = SceneSpec(st.scene.seed, start_pose=np.asarray(pose, np.float64), relocate=True)
        try:
            opened = self.client.reset([self.sessions[i]], [spec], self.outputs)
        except ServerError as exc:
            if exc.code not in GONE:
                raise
            raise _gone(exc) from None
        self.frames[i] = frame = self._opened_frame(opened, 0)
        _, st.success, _ = self.task.progress(st.task, frame)

    @staticmethod
    def _opened_frame(res: OpenResult, j: int) -> Frame:
        f = res.frames
        depth, semantic = (f[k][j] if k in f else None for k in ("depth", "semantic"))
        return Frame(f["rgb"][j], f["poses"][j][None], depth, semantic)

    def _begin(self, i: int, scene: Any, frame: Frame, view: np.ndarray | None) -> None:
        self.frames[i] = frame
        self.queued[i] = []
        cfg = self.config
        self.states[i] = new_episode(
            self.task, scene, frame, view, self.requests[i], self.rngs[i], cfg.revisit, cfg.coverage
        )

    def command(self, events: str | EventRecord | dict | list, rows: list[int]) -> list[EventRecord]:
        """Queue events for the next step of ``rows``: a prompt such as "turn the lights off", an
        ``EventRecord``, its dict form, or a list of these. Everything is checked here (types, every field,
        the server's limit of events per step), so a step never fails on what was queued; on any error
        nothing is queued."""
        records = command_records(events)
        for i in rows:
            if len(self.queued[i]) + len(records) > self.max_command_events:
                less = ", less the action's event" if self.config.event_actions else ""
                raise ValueError(
                    f"{len(records)} more event(s) would queue {len(self.queued[i]) + len(records)} for the "
                    f"next step; the server takes at most {self.max_command_events} commanded events a step "
                    f"(its limits.max_events_per_step{less}); nothing was queued"
                )
        for i in rows:
            self.queued[i].extend(records)
        return records

    def relative_chunk(
        self, poses: np.ndarray, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Chunk poses relative to ``poses [B,4,4]`` for checked actions: (rel [B,K,4,4], abs, event ids)."""
        deltas, event_ids = self.mapper.decode(actions)
        start = level_pose(poses)
        absolute = chunk_poses(start, deltas, self.config.frames_per_step, self.config.keymap)
        return invert_pose(start)[:, None] @ absolute, absolute, event_ids

    def step(
        self, actions: np.ndarray, resets: dict[int, int | None]
    ) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        """One server call: rows in ``resets`` start a new episode (seed or None), the others step.
        Returns rewards [B], terminated [B] and per-row info dicts."""
        t_start, b = time.perf_counter(), self.num_envs
        last = np.stack([f.poses[-1] for f in self.frames])
        rel, _, event_ids = self.relative_chunk(last, actions)
        events = [[list(EVENT_RECORDS[e]) + self.queued[i]] for i, e in enumerate(event_ids)]
        names = [[str(e) for e in row[0]] for row in events]  # before the server moves: nothing fails after
        specs = {i: self.scene_spec(i, s) for i, s in resets.items()}
        t0 = time.perf_counter()
        try:
            res = self.client.step(
                self.sessions,
                rel[:, None],
                events,
                self.outputs,
                "all" if self.config.info_frames else "last",
                specs,
            )
        except ServerError as exc:
            if exc.code in GONE:
                raise _gone(exc) from None
            if exc.code != ErrorCode.BAD_EVENT:
                raise
            self.queued = [[] for _ in range(b)]  # else every later step would send them again
            raise ValueError(f"{exc}. The env did not step; its queued events were dropped.") from None
        self.server_ms = (time.perf_counter() - t0) * 1000
        # every row's frame (and so its pose) follows the server's before anything is scored
        for i in range(b):
            frame = self._frame(res, i, names[i])
            if i in resets:
                view = res.frames["view_rgb"][i] if "view_rgb" in res.frames else None
                self._begin(i, res.scenes[i], frame, view)
            else:
                self.queued[i], self.frames[i] = [], frame
        rewards, terminated, infos = np.zeros(b), np.zeros(b, bool), []
        for i in range(b):
            if i in resets:
                infos.append({"reset": True})
                continue
            rewards[i], terminated[i], info = score_step(
                self.task, self.states[i], self.frames[i], self.weights
            )
            info["reset"] = False
            if self.config.info_frames:
                info["frames"] = res.frames["rgb"][i, 0]
            infos.append(info)
        self.step_ms = (time.perf_counter() - t_start) * 1000
        return rewards, terminated, infos

    def imagine(self, i: int, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Roll checked ``actions [N, T, *action]`` out from row ``i``'s state without changing it: the
        server forks its session N times (world state, memory, pose), runs all N sequences in one STEP of
        horizon T, and the forks are closed; rewards are scored on copies of the episode's reward state.
        Queued ``command()`` events apply at the first imagined step of every sequence (and stay queued).
        Returns rewards [N, T] (0 after an imagined episode ends), terminated [N, T], the last frame of
        each step [N, T, H, W, 3] and the camera poses reached [N, 4, 4]."""
        self.require_episode("imagine")
        n, t = actions.shape[:2]
        pose = np.repeat(self.frames[i].poses[-1:], n, axis=0)
        rel, events = [], [[] for _ in range(n)]
        for step in range(t):
            r, absolute, event_ids = self.relative_chunk(pose, actions[:, step])
            pose = absolute[:, -1]  # relative chunks do not depend on where collisions stop the camera
            rel.append(r)
            for j, e in enumerate(event_ids):
                events[j].append(list(EVENT_RECORDS[e]) + (self.queued[i] if step == 0 else []))
        forks = self.client.fork(self.sessions[i], n)
        try:
            res = self.client.step(forks, np.stack(rel, axis=1), events, self.outputs, "last")
        finally:
            self.client.close_sessions(forks)
        f = res.frames
        rewards, terminated = np.zeros((n, t)), np.zeros((n, t), bool)
        for j in range(n):
            state = self.states[i].clone()
            for s in range(t):
                if s and terminated[j, s - 1]:
                    terminated[j, s] = True
                    continue
                frame = self._frame(res, j, [str(e) for e in events[j][s]], s)
                rewards[j, s], terminated[j, s], _ = score_step(self.task, state, frame, self.weights)
        return rewards, terminated, f["rgb"][:, :, -1], f["poses"][:, -1, -1].copy()

    @staticmethod
    def _frame(res: StepResult, i: int, events: list[str], chunk: int = 0) -> Frame:
        """Row ``i``'s frame after chunk ``chunk`` of a step's reply (its last frame; every pose)."""
        f = res.frames
        return Frame(
            f["rgb"][i, chunk, -1],
            f["poses"][i, chunk],
            f["depth"][i, chunk, -1] if "depth" in f else None,
            f["semantic"][i, chunk, -1] if "semantic" in f else None,
            events,
        )

    # -- observations and info ------------------------------------------------------------------------------
    def observation(self, i: int) -> Any:
        frame, keys = self.frames[i], self.config.obs_keys
        if not isinstance(self.observation_space, spaces.Dict):
            return frame.rgb.copy()
        obs: dict[str, np.ndarray] = {"rgb": frame.rgb.copy()}
        if "depth" in keys:
            obs["depth"] = np.minimum(
                np.nan_to_num(frame.depth, posinf=self.config.depth_max_m), self.config.depth_max_m
            ).astype(np.float32)
        if "semantic" in keys:
            obs["semantic"] = frame.semantic.copy()
        obs.update(self.task.observe(self.states[i].task))
        return obs

    def info(self, i: int, extra: dict) -> dict[str, Any]:
        st, frame = self.states[i], self.frames[i]
        return {
            "pose": frame.poses[-1].copy(),
            "events": list(frame.events),
            "episode_step": st.step,
            "scene_seed": st.scene.seed,
            "timing": Timing(self.server_ms, self.step_ms),
            **extra,
        }

    def close(self) -> None:
        # An embedded server of our own frees everything when it stops; one that other envs still use is
        # asked to free our sessions, briefly (it may be the reason we are closing).
        shared = self.embedded is None or (getattr(self.embedded, "users", 1) > 1 and self.embedded.alive())
        if self.sessions is not None and shared and not self.client.closed:
            try:
                self.client.close_sessions(self.sessions, timeout_s=1.0)
            except (ServerUnavailable, RuntimeError):
                pass
        self.sessions = None
        self.client.close()
        if self.embedded is not None:
            self.embedded.close()


def start_embedded(config: EnvConfig) -> EmbeddedServer | LocalCluster | SharedServer:
    """The embedded server of an env with ``server`` in ``EMBEDDED``: a lease on the one this process's
    envs with the same settings share (``share_server``, the default), else a server of its own."""
    h, w = config.resolution
    mode = "subprocess" if config.server in (None, "subprocess") else "thread"
    kwargs = {"height": h, "width": w, "vfov_deg": config.vfov_deg, **config.backend_options}
    backend = config.backend or DEFAULT_BACKEND
    # The envs on an embedded server are this process's, stepped one after another: a step that waited for
    # the others' next steps to join its batch would wait in vain (a vector env sends its rows in one step).
    options = {"max_wait_ms": 0.0, **config.server_options}
    cluster = config.lanes > 1 and mode == "subprocess"

    def start() -> EmbeddedServer | LocalCluster:
        if cluster:
            return embedded_cluster(backend, kwargs, options, config.lanes)
        return EmbeddedServer(LaunchConfig(backend, kwargs, mode, server=options))

    if not config.share_server:
        return start()
    key = json.dumps(
        [backend, mode, config.lanes if cluster else 1, kwargs, options], sort_keys=True, default=repr
    )
    return POOL.acquire(key, start)


def _gone(exc: ServerError) -> ServerError:
    """``exc`` (the env's sessions no longer exist on the server) saying what recovers."""
    text = f"{exc.message}. The env's sessions are gone; call reset() to open new ones"
    return ServerError(exc.code, text, exc.address, exc.details)


def command_records(events: Any) -> list[EventRecord]:
    """The records of a ``command()``: a prompt string, an ``EventRecord``, a dict of one, or a list of these;
    ``ValueError`` or ``TypeError`` naming what is wrong otherwise."""
    items = events if isinstance(events, list | tuple) else [events]
    out: list[EventRecord] = []
    for item in items:
        if isinstance(item, str):
            out.extend(parse_prompt(item))
        elif isinstance(item, EventRecord):
            out.append(item)
        elif isinstance(item, dict):
            out.append(EventRecord.from_dict(item))
        else:
            raise TypeError(
                "command() takes a prompt such as 'turn the lights off', an EventRecord, a dict of one, or a "
                f"list of these; got {type(item).__name__} {item!r:.60}"
            )
    for ev in out:
        validate(ev)  # again: a record's attributes dict may have changed since it was built
    return out
