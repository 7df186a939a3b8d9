"""Depth visualisation: colour maps, the ``<stem>_vis.mp4`` writer and the live preview overlay.

Colours are matplotlib's ``inferno`` (OpenCV's ``COLORMAP_INFERNO`` table) or grey; bright = large value
(near for relative inverse depth, far for metric depth).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)


def to_uint8(depth: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Float ``[H, W]`` -> uint8 ``[H, W]``: ``floor((d - vmin) / (vmax - vmin) * 255)``, clipped (0 if flat)."""
    span = vmax - vmin
    if not span > 0:
        return np.zeros(depth.shape, np.uint8)
    n = (np.nan_to_num(depth.astype(np.float64), nan=vmin) - vmin) / span * 255.0
    return np.clip(n, 0, 255).astype(np.uint8)


def colorize(gray: np.ndarray, grayscale: bool = False) -> np.ndarray:
    """uint8 ``[H, W]`` -> RGB uint8 ``[H, W, 3]`` (inferno) or the grey map itself when ``grayscale``."""
    if grayscale:
        return gray
    return cv2.applyColorMap(gray, cv2.COLORMAP_INFERNO)[..., ::-1].copy()


def preview_payload(depth: np.ndarray, frame_index: int, grayscale: bool = False) -> dict[str, Any]:
    """Annolid's preview-callback payload: an overlay normalised to this frame's 1st-99th percentile."""
    finite = depth[np.isfinite(depth)]
    if finite.size:
        lo, hi = (float(v) for v in np.percentile(finite, [1, 99]))
        if hi - lo < 1e-6:
            lo, hi = float(finite.min()), float(finite.max())
        stats = {"min": float(finite.min()), "max": float(finite.max()), "mean": float(finite.mean())}
    else:
        lo = hi = 0.0
        stats = {"min": float("nan"), "max": float("nan"), "mean": float("nan")}
    gray = to_uint8(depth, lo, hi)
    overlay = np.repeat(gray[..., None], 3, axis=2) if grayscale else colorize(gray)
    stats.update(display_min=lo, display_max=hi)
    return {"frame_index": int(frame_index), "overlay": np.ascontiguousarray(overlay), "depth_stats": stats}


def pad_to_even(rgb: np.ndarray) -> np.ndarray:
    """Replicate the last row/column so both sides are even (H.264 in yuv420p needs that)."""
    h, w = rgb.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return rgb
    return cv2.copyMakeBorder(rgb, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)


class Mp4Writer:
    """Write RGB uint8 frames to an mp4: H.264 (libx264, CRF 18, yuv420p) through imageio-ffmpeg when it
    works, else OpenCV's ``mp4v``. Odd frame sizes are padded to even by one replicated row/column.
    Use as a context manager; ``path`` must be a temp path (the caller renames it when done)."""

    def __init__(self, path: str | Path, size: tuple[int, int], fps: float):
        self.path = Path(path)
        self.size = (size[0] + size[0] % 2, size[1] + size[1] % 2)
        self.fps = float(fps)
        self.codec = ""
        self._gen = None
        self._cv = None

    def __enter__(self) -> "Mp4Writer":
        try:
            import imageio_ffmpeg

            self._gen = imageio_ffmpeg.write_frames(
                str(self.path), self.size, fps=self.fps, codec="libx264", quality=None, macro_block_size=1,
                output_params=["-crf", "18"], ffmpeg_log_level="error")
            self._gen.send(None)
            self.codec = "h264"
        except (ImportError, OSError, RuntimeError) as e:
            log.info("libx264 through imageio-ffmpeg unavailable (%s); writing mp4v with OpenCV", e)
            self._gen = None
            self._open_cv()
        return self

    def _open_cv(self) -> None:
        self._cv = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
        if not self._cv.isOpened():
            raise OSError(f"{self.path}: cannot open an mp4 writer (neither libx264 nor mp4v works)")
        self.codec = "mp4v"

    def write(self, rgb: np.ndarray) -> None:
        """Append one frame: RGB uint8 ``[H, W, 3]`` or grey ``[H, W]`` at the size given."""
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[..., None], 3, axis=2)
        frame = np.ascontiguousarray(pad_to_even(rgb))
        if self._gen is not None:
            self._gen.send(frame.tobytes())
        else:
            self._cv.write(frame[..., ::-1])

    def __exit__(self, exc_type, *exc: object) -> None:
        if self._gen is not None:
            self._gen.close()
        if self._cv is not None:
            self._cv.release()
