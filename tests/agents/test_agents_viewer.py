"""dreamx-play headless: scripted keys move the camera and trigger events; screenshot and MP4 are written."""

import subprocess

import cv2
import numpy as np
import pytest

from agents.keys import keys_to_action, parse_script
from agents.minimap import Minimap
from agents.viewer import Viewer, ViewerConfig
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


def test_dreamx_play_rejects_a_bad_script():
    proc = subprocess.run(
        ["dreamx-play", "--headless", "--script", "W*3,X"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "unknown script token 'X'" in proc.stderr
