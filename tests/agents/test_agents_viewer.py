"""dreamx-play headless: scripted keys move the camera and trigger events; screenshot and MP4 are written."""

import subprocess
import sys

import cv2
import numpy as np
import pytest

from agents.keys import keys_to_action, parse_script
from agents.minimap import Minimap
from agents.video import VideoWriter
from agents.viewer import HELP, HELP_HINT, Viewer, ViewerConfig, join_script_value
from world_model.geometry import LOOK_COMBOS, MOVE_COMBOS


def test_held_keys_combine_and_opposites_cancel():
    assert MOVE_COMBOS[keys_to_action({"W", "A"})[0]] == "WA"
    assert LOOK_COMBOS[keys_to_action({"I", "J"})[1]] == "IJ"
    assert keys_to_action({"W", "S", "J", "L"}, event=3).tolist() == [0, 0, 3]


def test_script_parsing():
    frames = parse_script("WJ*3, 1, T:drop a red ball, -*2, R")
    assert len(frames) == 8 and frames[0].held == frozenset("WJ") and frames[3].event == 1
    assert frames[4].text == "drop a red ball" and frames[7].toggle_record
    for bad in ("Q", "W*0", "9"):
        with pytest.raises(ValueError, match="script token"):
            parse_script(bad)


def test_minimap_marks_cells_entered_again():
    pose, minimap = np.eye(4), Minimap(cell_m=0.5)
    for x in (0.1, 0.7, 0.1):
        pose[0, 3] = x
        minimap.update(pose.copy())
    assert minimap.revisited_cells == 1 and len(minimap.visits) == 2


def test_video_writer_h264_with_imageio_ffmpeg_else_mp4v(tmp_path, monkeypatch):
    frames = np.random.default_rng(0).integers(0, 255, (6, 51, 67, 3), dtype=np.uint8)  # odd sides
    for expected in ("h264", "mp4v"):
        path = str(tmp_path / f"{expected}.mp4")
        writer = VideoWriter(path, (67, 51), fps=10)
        for frame in frames:
            writer.write(frame)
        writer.close()
        capture = cv2.VideoCapture(path)
        assert writer.codec == expected and writer.size == (66, 50)
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6 and capture.read()[1].shape == (50, 66, 3)
        fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").lower()  # mp4v reads as fmp4
        assert fourcc in ({b"h264", b"avc1"} if expected == "h264" else {b"mp4v", b"fmp4"})
        monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if not installed: OpenCV's mp4v


def test_viewer_headless_script_moves_triggers_events_and_saves(oracle_server, tmp_path):
    shot, video = tmp_path / "shot.png", tmp_path / "play.mp4"
    script = "W*6,J*4,3,T:turn the lights off,-*2,R"  # R stops the recording started by `record`
    config = ViewerConfig(
        backend="oracle", server=oracle_server, seed=2, script=script, fps=0, window=256,
        screenshot=str(shot), record=str(video),
    )  # fmt: skip
    summary = Viewer(config).run()
    assert summary["frames"] == len(parse_script(script))
    start, end = summary["start_pose"], summary["final_pose"]
    assert np.linalg.norm(end[:2, 3] - start[:2, 3]) > 0.3  # walked forward ...
    assert np.degrees(np.arccos(np.clip(start[:3, 2] @ end[:3, 2], -1, 1))) > 8  # ... and turned left
    assert summary["events"] == ["drop(ball color=red)", "lights(room state=off)"]
    image = cv2.imread(str(shot))
    assert image.shape == (256, 256, 3) and image.std() > 5
    capture = cv2.VideoCapture(str(video))
    assert capture.isOpened() and int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) >= 10
    assert int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little") in (
        b"h264",
        b"avc1",
    )  # browsers play it


def test_viewer_hud_hints_at_help_wraps_errors_and_counts_no_revisit_standing_still(oracle_server):
    script = (
        "-*14,T:make it rain frogs"  # unreadable: the error lists the vocabulary, far wider than the window
    )
    config = ViewerConfig(
        backend="oracle", server=oracle_server, script=script, fps=0, window=256, max_frames=15
    )
    viewer = Viewer(config)
    summary = viewer.run()
    assert summary["frames"] == 15 and summary["revisits"] == 0
    hud = viewer.hud
    assert HELP_HINT in hud and not set(HELP) & set(hud)
    assert any(line.startswith("revisits 0 ") for line in hud)  # 15 frames in place, none a revisit
    assert viewer.message.startswith("cannot read 'make it rain frogs'") and len(viewer.message) > 200
    assert all(viewer.font.size(line)[0] <= 256 - 8 for line in hud)
    assert viewer.message.replace(" ", "") in "".join(hud).replace(" ", "")  # all of it, in pieces


def test_viewer_screenshot_without_a_script_runs_max_frames(oracle_server, tmp_path):
    shot = tmp_path / "shot.png"
    config = ViewerConfig(backend="oracle", server=oracle_server, fps=0, screenshot=str(shot), max_frames=5)
    assert Viewer(config).run()["frames"] == 5 and cv2.imread(str(shot)).shape == (512, 512, 3)
    config = ViewerConfig(backend="oracle", server=oracle_server, fps=0, screenshot=str(shot))
    assert Viewer(config).run()["frames"] == 1  # no script, no max_frames: the first frame


def test_dreamx_play_rejects_a_bad_script():
    proc = subprocess.run(
        ["dreamx-play", "--headless", "--script", "W*3,X"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "unknown script token 'X'" in proc.stderr


def test_a_script_may_start_with_a_dash_without_equals():
    assert join_script_value(["--script", "-*30", "--seed", "1"]) == ["--script=-*30", "--seed", "1"]
    assert join_script_value(["--script", "W*3"]) == ["--script", "W*3"]
    proc = subprocess.run(  # "-*3" is read as the script (whose X is then refused), not as an option
        ["dreamx-play", "--headless", "--script", "-*3,X"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "unknown script token 'X'" in proc.stderr
