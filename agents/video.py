"""MP4 recording for the viewer: H.264 where it can, so browsers and chat apps play the files.

OpenCV's pip wheels carry no H.264 encoder (``cv2.VideoWriter_fourcc(*"avc1")`` opens nothing), so H.264 goes
through the ffmpeg that ``imageio-ffmpeg`` ships (the one Gymnasium's ``RecordVideo`` uses through moviepy),
``libx264`` in ``yuv420p``. Without ``imageio-ffmpeg`` it falls back to OpenCV's MPEG-4 Part 2 (``mp4v``),
which desktop players play and browsers do not.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

FALLBACK_NOTE = "MPEG-4 Part 2 (mp4v): browsers will not play it; pip install imageio-ffmpeg for H.264"


class VideoWriter:
    """Frames ``[H, W, 3]`` uint8 RGB of one size -> an MP4 at ``path``; ``codec`` says which one."""

    def __init__(self, path: str, size: tuple[int, int], fps: float) -> None:
        w, h = size
        self.size = (w - w % 2, h - h % 2)  # yuv420p needs even sides
        self._ffmpeg: Any = None
        self._cv: Any = None
        try:
            import imageio_ffmpeg
        except ImportError:
            self.codec = "mp4v"
            self._cv = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, self.size)
        else:
            self.codec = "h264"
            self._ffmpeg = imageio_ffmpeg.write_frames(
                path, self.size, fps=fps, codec="libx264", pix_fmt_out="yuv420p", quality=7,
                macro_block_size=2, ffmpeg_log_level="error", output_params=["-preset", "veryfast"],
            )  # fmt: skip
            self._ffmpeg.send(None)  # starts ffmpeg

    def write(self, rgb: np.ndarray) -> None:
        if rgb.shape[1::-1] != self.size:  # the window was resized while recording
            rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_NEAREST)
        if self._ffmpeg is not None:
            self._ffmpeg.send(np.ascontiguousarray(rgb))
        else:
            self._cv.write(np.ascontiguousarray(rgb[..., ::-1]))

    def close(self) -> None:
        if self._ffmpeg is not None:
            self._ffmpeg.close()
        else:
            self._cv.release()
