"""Reading a video as sampled RGB frames, the way Annolid's depth tool samples them.

Sampling: ``stride = max(round(src_fps / target_fps), 1)`` (stride 1 when ``target_fps <= 0``), source
frames ``0, stride, 2*stride, ...``, the first ``max_len`` of them when ``max_len > 0``. Frames whose
longer side exceeds ``max_res`` are shrunk with ``cv2.INTER_AREA`` to ``floor(side * max_res / longer)``
(so sizes may be odd, as in Annolid). Frames are decoded sequentially (no seeking), so a container
whose frame count is wrong neither aborts the run nor drops frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from preprocess.errors import S3dgsError

DEFAULT_FPS = 30.0
_NO_FRAMES = ("{path}: no frame could be decoded (empty or damaged video); check it plays, or re-encode it "
              "with ffmpeg -i IN -c:v libx264 OUT.mp4")


class VideoReadError(S3dgsError, ValueError):
    """A video that cannot be opened or holds no frames; the message names the file and the fix."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video. ``fps`` is 0 and ``frame_count`` -1 when unknown."""

    path: Path
    width: int
    height: int
    fps: float
    frame_count: int


@dataclass(frozen=True)
class Sampling:
    """Which source frames a run uses and at what size.

    ``stride``: source frames between samples; ``max_len``: cap on sampled frames (<= 0: none);
    ``size``: processed ``(width, height)``; ``src_fps``: source rate used for timestamps (a default
    when the container has none); ``fps``: rate of the sampled sequence, ``src_fps / stride``.
    """

    stride: int
    max_len: int
    size: tuple[int, int]
    src_fps: float
    fps: float

    def positions(self, frame_count: int) -> range:
        """Source frame indices of the samples for a video of ``frame_count`` frames."""
        n = len(range(0, max(frame_count, 0), self.stride))
        if self.max_len > 0:
            n = min(n, self.max_len)
        return range(0, n * self.stride, self.stride)

    def expected_count(self, frame_count: int) -> int | None:
        """Number of samples if the container's frame count is known, else ``None``."""
        return len(self.positions(frame_count)) if frame_count >= 0 else None


def probe_video(path: str | Path) -> VideoInfo:
    """Open ``path``, read its rate and frame count, and decode its first frame for the size (as shown,
    i.e. after the container's rotation, which OpenCV applies)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"Video '{path}' does not exist; check the path.")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoReadError(f"{path}: not a readable video (OpenCV/FFmpeg cannot open it); "
                                 "re-encode it, e.g. ffmpeg -i IN -c:v libx264 OUT.mp4")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or -1)
        ok, first = cap.read()
        if not ok or first is None:
            raise VideoReadError(_NO_FRAMES.format(path=path))
    finally:
        cap.release()
    return VideoInfo(path=path, width=first.shape[1], height=first.shape[0],
                     fps=fps if math.isfinite(fps) and fps > 0 else 0.0, frame_count=count if count > 0 else -1)


def processed_size(width: int, height: int, max_res: int) -> tuple[int, int]:
    """Frame size ``(width, height)`` after the ``max_res`` rule (floor, never below 1)."""
    longer = max(width, height)
    if max_res <= 0 or longer <= max_res:
        return width, height
    scale = max_res / longer
    return max(int(width * scale), 1), max(int(height * scale), 1)


def plan_sampling(info: VideoInfo, target_fps: float = -1, max_len: int = -1, max_res: int = 1280) -> Sampling:
    """Annolid's sampling rule for ``info``: stride from the source and target rates, size from ``max_res``."""
    src_fps = info.fps if info.fps > 0 else (float(target_fps) if target_fps > 0 else DEFAULT_FPS)
    stride = max(int(round(src_fps / target_fps)), 1) if target_fps > 0 else 1
    return Sampling(stride=stride, max_len=int(max_len), size=processed_size(info.width, info.height, max_res),
                    src_fps=src_fps, fps=src_fps / stride)


def iter_sampled_frames(info: VideoInfo, sampling: Sampling) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(source frame index, RGB uint8 [H, W, 3])`` for every sampled frame, decoding in order.

    Frames between samples are skipped with ``grab`` (no colour conversion). Raises
    :class:`VideoReadError` if not even the first frame decodes.
    """
    cap = cv2.VideoCapture(str(info.path))
    try:
        index = taken = 0
        while sampling.max_len <= 0 or taken < sampling.max_len:
            if index % sampling.stride:
                if not cap.grab():
                    break
                index += 1
                continue
            ok, bgr = cap.read()
            if not ok or bgr is None:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if (rgb.shape[1], rgb.shape[0]) != sampling.size:
                rgb = cv2.resize(rgb, sampling.size, interpolation=cv2.INTER_AREA)
            yield index, rgb
            taken += 1
            index += 1
    finally:
        cap.release()
    if taken == 0:
        raise VideoReadError(_NO_FRAMES.format(path=info.path))
