"""dreamx-play: walk a DreamX world by hand in a pygame window.

    dreamx-play                                   # embedded default backend, Explore, scene 0
    dreamx-play --backend oracle --seed 7 --resolution 128
    dreamx-play --headless --script "W*10,J*5,1" --screenshot outputs/play.png   # no display needed
    dreamx-play --backend learned --truth                     # the learned model beside the ground truth
    dreamx-play --policy outputs/agents/<run>/policy.zip      # P hands control to the policy and back

Keys (hold them; they combine, so W+J walks in an arc):

    W/S forward/back   A/D strafe   J/L turn   I/K look up/down
    1-8 event menu (1 lights off, 2 lights on, 3 drop a red ball, 4 drop a blue box, 5 open the door,
        6 close the door, 7 push the nearest object, 8 paint the nearest object green)
    T   type an event ("drop a green cylinder 2 m ahead"), Enter sends it, Esc cancels
    R   start/stop recording an MP4 (outputs/play/play-<time>.mp4; H.264, see agents.video)
    P   switch control between you and the loaded policy (--policy; its env and frames per step by default)
    H   show/hide this help (the HUD says "H: keys and help" while it is hidden)        Esc quit

The HUD shows live frames per second, the per-frame latency (env step and server round trip), the pose
(metres; yaw and pitch in degrees) and the last events; the minimap shows the places visited, with revisits
marked. The window is resizable: the frame is scaled to fit. Each loop steps the env once, with
``frames_per_step`` (default 1) frames, so FPS is the simulator's frame rate as a player sees it.

``--truth`` opens a second env on the MuJoCo ground truth (``backend="oracle"``), same scene, driven by the
same actions and events, and shows it to the right: where the learned model drifts from the truth is
visible at a glance (the HUD gives the pose gap). ``--policy`` loads an SB3 policy saved by
``dreamx-train-agent``; it sees the left (simulated) frame. SB3 .zip files contain pickled objects: load
only trusted local files.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.keys import KEYS, SCRIPT_HELP, keys_to_action, parse_script
from agents.minimap import Minimap
from agents.policies import TRUSTED_FILES_NOTE, PolicyPilot, find_card, resolve_env_id
from agents.video import FALLBACK_NOTE, VideoWriter
from world_model.events import EVENT_MENU
from world_model.geometry import yaw_pitch
from world_model.options import add_model_arguments, model_options

HELP = [
    "W/S A/D move   J/L I/K look   (hold; combos work)",
    *[f"{i} {name}" for i, name in enumerate(EVENT_MENU) if i],
    "T type an event   R record MP4   P policy/human   H hide this   Esc quit",
]
HELP_HINT = "H: keys and help"


@dataclass
class ViewerConfig:
    env_id: str = "DreamX/Explore-v0"
    backend: str | None = None  # None: world_model.backend_registry.DEFAULT_BACKEND
    server: str | None = None  # address of a running dreamx-serve; None: an embedded one
    seed: int = 0  # scene seed and reset seed
    resolution: int = 64
    frames_per_step: int = 1
    window: int = 512  # initial window side in pixels
    fps: float = 30.0  # frame-rate cap; 0 = as fast as the simulator goes
    script: str = ""  # scripted key frames (agents.keys), played before (or instead of) the keyboard
    screenshot: str | None = None  # save the last frame here and quit: at max_frames, else the script's end
    record: str | None = None  # record an MP4 here from the start
    record_dir: str = "outputs/play"  # where R puts its recordings
    max_frames: int = 0  # quit after this many frames (0 = never)
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    policy: str | None = None  # an SB3 .zip from dreamx-train-agent (trusted local file); P toggles it
    policy_algo: str | None = None  # ppo | dqn; None: from its policy card
    policy_control: bool = False  # start with the policy in control
    truth: bool = False  # show the ground truth (oracle backend, same scene and actions) to the right
    truth_server: str | None = None  # address of a running oracle dreamx-serve; None: an embedded one


class Viewer:
    """The pygame loop: input -> one env step -> draw (frame, HUD, minimap) -> optional MP4 frame."""

    def __init__(self, config: ViewerConfig) -> None:
        import gymnasium as gym
        import pygame

        import dreamx_env  # noqa: F401  (registers the envs)

        self.cfg, self.pg = config, pygame
        self.script = parse_script(config.script)
        kwargs = dict(config.env_kwargs, scene_seed=config.seed, resolution=config.resolution)
        kwargs.update(frames_per_step=config.frames_per_step, server=config.server)
        kwargs.setdefault("event_actions", True)  # the number keys are the action's event entry
        if config.backend is not None:
            kwargs["backend"] = config.backend
        # A game does not end on its own: no time limit (the env still ends a GoalView/FindObject success).
        self.pilot = PolicyPilot(config.policy, config.policy_algo) if config.policy else None
        if self.pilot and self.pilot.card and "obs_keys" in self.pilot.card.env_kwargs:
            kwargs.setdefault("obs_keys", self.pilot.card.env_kwargs["obs_keys"])
        self.env = gym.make(config.env_id, max_episode_steps=10**9, **kwargs)
        self.truth_env = None
        try:
            if self.pilot:
                self.pilot.check(self.env.observation_space)
            if config.truth:
                truth_kwargs = dict(kwargs, backend="oracle", server=config.truth_server)
                truth_kwargs.pop("backend_options", None)  # the learned model's, not the truth's
                self.truth_env = gym.make(config.env_id, max_episode_steps=10**9, **truth_kwargs)
        except BaseException:
            self.env.close()
            raise
        self.policy_in_control = bool(self.pilot) and config.policy_control
        self.policy_keys: frozenset[str] = frozenset()
        pygame.display.init()
        pygame.font.init()
        size = (config.window * (2 if config.truth else 1), config.window)
        self.screen = pygame.display.set_mode(size, pygame.RESIZABLE)
        pygame.display.set_caption(f"DreamX - {config.env_id}")
        self.font = pygame.font.Font(None, 20)
        self.minimap = Minimap()
        self.writer: VideoWriter | None = None
        self.video_path: str | None = None
        self.typing: str | None = None  # the text box's content while it is open
        self.show_help, self.message, self.message_until = False, "", 0.0
        self.hud: list[str] = []  # the HUD's lines as last drawn (wrapped to the window's width)
        self.events_sent: list[str] = []
        self.fps, self.latency_ms, self.server_ms = 0.0, 0.0, 0.0

    # -- input ----------------------------------------------------------------------------------------------
    def _handle_events(self) -> tuple[bool, int]:
        """(keep running, event-menu index pressed this frame)."""
        pg, event_index = self.pg, 0
        for ev in pg.event.get():
            if ev.type == pg.QUIT:
                return False, 0
            if ev.type != pg.KEYDOWN:
                continue
            if self.typing is not None:
                if ev.key == pg.K_ESCAPE:
                    self.typing = None
                elif ev.key in (pg.K_RETURN, pg.K_KP_ENTER):
                    self._command(self.typing)
                    self.typing = None
                elif ev.key == pg.K_BACKSPACE:
                    self.typing = self.typing[:-1]
                elif ev.unicode and ev.unicode.isprintable():
                    self.typing += ev.unicode
            elif ev.key == pg.K_ESCAPE:
                return False, 0
            elif ev.key == pg.K_t:
                self.typing = ""
            elif ev.key == pg.K_r:
                self._toggle_record()
            elif ev.key == pg.K_h:
                self.show_help = not self.show_help
            elif ev.key == pg.K_p:
                self._toggle_policy()
            elif pg.K_1 <= ev.key < pg.K_1 + len(EVENT_MENU) - 1:
                event_index = ev.key - pg.K_1 + 1
        return True, event_index

    def _held_keys(self) -> set[str]:
        if self.typing is not None:
            return set()
        pressed = self.pg.key.get_pressed()
        return {k for k in KEYS if pressed[getattr(self.pg, f"K_{k.lower()}")]}

    def _toggle_policy(self) -> None:
        if self.pilot is None:
            self._say("no policy loaded: start with --policy <path>.zip")
            return
        self.policy_in_control = not self.policy_in_control
        self._say(f"control: {'policy ' + self.pilot.name if self.policy_in_control else 'human'}")

    def _command(self, text: str) -> None:
        try:
            records = self.env.unwrapped.command(text)
            if self.truth_env is not None:
                self.truth_env.unwrapped.command(records)
            self._say(f"sent: {', '.join(map(str, records))}")
        except ValueError as exc:  # the message lists the vocabulary
            self._say(f"cannot read {text!r}: {exc}", seconds=6.0)

    def _say(self, text: str, seconds: float = 3.0) -> None:
        self.message, self.message_until = text, time.monotonic() + seconds

    # -- recording ------------------------------------------------------------------------------------------
    def _toggle_record(self, path: str | None = None) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            self._say(f"saved {self.video_path}")
            return
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.video_path = path or str(Path(self.cfg.record_dir) / f"play-{stamp}.mp4")
        Path(self.video_path).parent.mkdir(parents=True, exist_ok=True)
        self.writer = VideoWriter(self.video_path, self.screen.get_size(), self.cfg.fps or 30.0)
        if self.writer.codec != "h264":
            self._say(f"recording {FALLBACK_NOTE}", seconds=6.0)

    def _record_frame(self) -> None:
        self.writer.write(self.pg.surfarray.array3d(self.screen).swapaxes(0, 1))

    # -- drawing --------------------------------------------------------------------------------------------
    def _draw(self, obs: Any, info: dict, truth: tuple[Any, dict] | None = None) -> None:
        pg, screen = self.pg, self.screen
        w, h = screen.get_size()
        screen.fill((0, 0, 0))
        panel_w = w // 2 if truth else w  # side by side: simulator left, ground truth right
        side = min(panel_w, h)
        panels = [(obs, 0)] + ([(truth[0], panel_w)] if truth else [])
        for panel_obs, x0 in panels:
            rgb = panel_obs["rgb"] if isinstance(panel_obs, dict) else panel_obs
            frame = pg.transform.scale(pg.surfarray.make_surface(rgb.swapaxes(0, 1)), (side, side))
            screen.blit(frame, (x0 + (panel_w - side) // 2, (h - side) // 2))
        if isinstance(obs, dict) and "goal" in obs:  # GoalView: the goal image in the top-right corner
            goal = pg.transform.scale(pg.surfarray.make_surface(obs["goal"].swapaxes(0, 1)), (side // 5,) * 2)
            screen.blit(goal, (panel_w - side // 5 - 4, 4))
        if truth:
            gap = float(np.linalg.norm(truth[1]["pose"][:3, 3] - info["pose"][:3, 3]))
            label = f"ground truth (oracle)  pose gap {gap:.2f} m"
            label += "  success" if truth[1].get("success") else ""
            screen.blit(self.font.render(label, True, (255, 255, 255), (0, 0, 0)), (panel_w + 4, h - 20))
        pose = info["pose"]
        yaw, pitch = np.degrees(yaw_pitch(pose))
        lines = [
            f"{self.backend}  {self.cfg.env_id}  scene {info['scene_seed']}  step {info['episode_step']}",
            f"FPS {self.fps:5.1f}   latency {self.latency_ms:5.1f} ms (server {self.server_ms:5.1f} ms)",
            f"x {pose[0, 3]:.2f}  y {pose[1, 3]:.2f}  z {pose[2, 3]:.2f} m  "
            f"yaw {yaw:.1f}  pitch {pitch:.1f} deg",
            f"revisits {info.get('revisit_count', 0)}  cells re-entered {self.minimap.revisited_cells}",
        ]
        if self.pilot is not None:
            held = "".join(k for k in KEYS if k in self.policy_keys) or "-"
            lines.append(f"control: policy {self.pilot.name} (holds {held})" if self.policy_in_control else
                         "control: human (P: policy)")  # fmt: skip
        if self.events_sent:
            lines.append(f"last event: {self.events_sent[-1]}")
        if self.writer is not None:
            lines.append(f"REC {self.video_path}")
        lines += HELP if self.show_help else [HELP_HINT]
        if time.monotonic() < self.message_until:
            lines.append(self.message)
        if self.typing is not None:
            lines.append(f"event> {self.typing}_")
        self.hud = [part for line in lines for part in self._wrap(line, w - 8)]
        for i, line in enumerate(self.hud):
            text = self.font.render(line, True, (255, 255, 255), (0, 0, 0))
            screen.blit(text, (4, 4 + 18 * i))
        mini = max(64, side // 4)
        self.minimap.draw(pg, screen, pg.Rect(w - mini - 4, h - mini - 4, mini, mini))
        pg.display.flip()

    def _wrap(self, line: str, width: int) -> list[str]:
        """``line`` cut at spaces (inside a word where one word is too wide) into pieces ``width`` px wide."""
        pieces = []
        while self.font.size(line)[0] > width:
            lo, hi = 1, len(line)  # bisect for the longest prefix that fits
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if self.font.size(line[:mid])[0] <= width else (lo, mid)
            space = line.rfind(" ", 0, lo + 1)
            cut = space if space > 0 else lo
            pieces.append(line[:cut])
            line = line[cut:].lstrip()
        return [*pieces, line]

    # -- the loop -------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Play until Esc or ``max_frames`` (with ``screenshot`` and no ``max_frames``: the script's end,
        or one frame without a script); returns a summary."""
        cfg, pg = self.cfg, self.pg
        obs, info = self.env.reset(seed=cfg.seed)
        truth = self.truth_env.reset(seed=cfg.seed) if self.truth_env is not None else None
        self.backend = self.env.unwrapped.core.backend_name
        start_pose, frames, latencies = info["pose"].copy(), 0, []
        positions, policy_frames = [info["pose"][:3, 3].copy()], 0
        self.minimap.update(info["pose"])
        if cfg.record:
            self._toggle_record(cfg.record)
        clock, t_start, last = pg.time.Clock(), time.perf_counter(), time.perf_counter()
        running = True
        try:
            while running:
                running, event_index = self._handle_events()
                scripted = self.script[frames] if frames < len(self.script) else None
                held = set(scripted.held) if scripted else self._held_keys()
                if scripted:
                    event_index = scripted.event or event_index
                    if scripted.text:
                        self._command(scripted.text)
                    if scripted.toggle_record:
                        self._toggle_record()
                    if scripted.toggle_policy:
                        self._toggle_policy()
                if self.policy_in_control:  # the policy holds the keys; number keys still send events
                    held, policy_event = self.pilot.act(obs)
                    self.policy_keys, event_index = held, event_index or policy_event
                    policy_frames += 1
                action = keys_to_action(held, event_index)
                obs, _, terminated, truncated, info = self.env.step(action)
                if self.truth_env is not None:
                    truth_obs, *_, truth_info = self.truth_env.step(action)
                    truth = (truth_obs, truth_info)
                positions.append(info["pose"][:3, 3].copy())
                if info["events"]:
                    self.events_sent.extend(info["events"])
                self.latency_ms, self.server_ms = info["timing"].step_ms, info["timing"].server_ms
                latencies.append(self.latency_ms)
                self.minimap.update(info["pose"], bool(info.get("is_revisit", False)))
                frames += 1
                now = time.perf_counter()
                self.fps = 0.9 * self.fps + 0.1 / max(now - last, 1e-6) if frames > 1 else 1 / (now - last)
                last = now
                self._draw(obs, info, truth)
                if self.writer is not None:
                    self._record_frame()
                if terminated or truncated:
                    self._say("episode over: success" if info.get("success") else "episode over")
                    obs, info = self.env.reset()
                    if self.truth_env is not None:
                        truth = self.truth_env.reset()
                if cfg.max_frames and frames >= cfg.max_frames:
                    running = False
                elif not cfg.max_frames and cfg.screenshot and frames >= len(self.script):
                    running = False
                if cfg.fps:
                    clock.tick(cfg.fps)
            elapsed = time.perf_counter() - t_start
            if cfg.screenshot:  # the last frame drawn, whatever ended the run
                Path(cfg.screenshot).parent.mkdir(parents=True, exist_ok=True)
                pg.image.save(self.screen, cfg.screenshot)
        finally:
            self.close()
        return {
            "backend": self.backend,
            "frames": frames,
            "seconds": elapsed,
            "fps": frames / elapsed,
            "latency_ms": float(np.mean(latencies)) if latencies else 0.0,
            "start_pose": start_pose,
            "final_pose": info["pose"].copy(),
            "events": list(self.events_sent),
            "revisits": len(self.minimap.revisit_points),
            "positions": np.array(positions),
            "policy": self.pilot.name if self.pilot else None,
            "policy_frames": policy_frames,
            "truth_final_pose": truth[1]["pose"].copy() if truth else None,
            "screenshot": cfg.screenshot,
            "video": self.video_path,
        }

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.env.close()
        if self.truth_env is not None:
            self.truth_env.close()
        self.pg.display.quit()


def join_script_value(argv: list[str]) -> list[str]:
    """``--script -*30`` as ``--script=-*30``: argparse takes a value that starts with '-' for an option."""
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg == "--script" and out[i + 1].startswith("-") and out[i + 1] != "--":
            out[i : i + 2] = [f"--script={out[i + 1]}"]
            break
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="dreamx-play", description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default=None, help="env id (default: the policy's env, else DreamX/Explore-v0)")
    p.add_argument("--backend", default=None, help="oracle | learned | constant (default: default backend)")
    p.add_argument("--server", default=None, help="address of a running dreamx-serve (default: embedded)")
    p.add_argument("--seed", type=int, default=0, help="scene seed (training scenes: below 100000)")
    p.add_argument("--resolution", type=int, default=64, help="square frame size in pixels")
    p.add_argument(
        "--frames-per-step", type=int, default=None, help="frames per loop (default: the policy's, else 1)"
    )
    p.add_argument("--window", type=int, default=512, help="initial window side in pixels")
    p.add_argument("--fps", type=float, default=30.0, help="frame-rate cap (0: uncapped)")
    p.add_argument(
        "--script",
        default="",
        help=f'scripted keys played first, e.g. "W*10,J*5,1,-*30,T:lights on"; {SCRIPT_HELP}',
    )
    p.add_argument(
        "--screenshot",
        default=None,
        help="save a PNG of the last frame and quit: after --max-frames frames if given, else the script",
    )
    p.add_argument(
        "--record",
        default=None,
        help=f"record an MP4 here from the start (H.264; without imageio-ffmpeg {FALLBACK_NOTE})",
    )
    p.add_argument("--max-frames", type=int, default=0, help="quit after this many frames (0: never)")
    p.add_argument("--headless", action="store_true", help="no window (SDL_VIDEODRIVER=dummy)")
    p.add_argument("--policy", default=None, help=f"SB3 .zip to hand control to with P. {TRUSTED_FILES_NOTE}")
    p.add_argument("--algo", default=None, help="ppo | dqn (default: from the policy card)")
    p.add_argument("--policy-control", action="store_true", help="start with the policy in control")
    p.add_argument("--truth", action="store_true", help="show the ground truth (oracle) side by side")
    p.add_argument("--truth-server", default=None, help="a running oracle dreamx-serve (default: embedded)")
    add_model_arguments(p)
    args = p.parse_args(join_script_value(sys.argv[1:] if argv is None else argv))
    if args.headless:
        os.environ["SDL_VIDEODRIVER"] = "dummy"
    try:
        parse_script(args.script)
    except ValueError as exc:
        p.error(str(exc))
    card = find_card(args.policy) if args.policy else None  # the policy's env, unless told otherwise
    env_id = resolve_env_id(args.env) if args.env else card.env_id if card else "DreamX/Explore-v0"
    chunk = args.frames_per_step or (card.env_kwargs.get("frames_per_step", 4) if card else 1)
    options = model_options(args)
    config = ViewerConfig(
        env_id, args.backend, args.server, args.seed, args.resolution, chunk, args.window,
        args.fps, args.script, args.screenshot, args.record, max_frames=args.max_frames,
        policy=args.policy, policy_algo=args.algo, policy_control=args.policy_control, truth=args.truth,
        truth_server=args.truth_server, env_kwargs={"backend_options": options} if options else {},
    )  # fmt: skip
    summary = Viewer(config).run()
    print(
        f"{summary['frames']} frames in {summary['seconds']:.1f} s = {summary['fps']:.1f} FPS, "
        f"mean latency {summary['latency_ms']:.1f} ms/frame ({summary['backend']}); "
        f"events {summary['events']}"
        + (f"; screenshot {summary['screenshot']}" if summary["screenshot"] else "")
        + (f"; video {summary['video']}" if summary["video"] else "")
    )


if __name__ == "__main__":
    main()
