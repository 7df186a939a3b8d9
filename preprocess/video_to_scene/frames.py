"""Stage ``frames``: the sharpest frame of every time bucket of a video (or of an ordered image folder).

A video is cut into buckets of ``src_fps / fps`` source frames (widened to ``frame_count / max_frames``
when that would give more than ``max_frames`` buckets, so the frames still span the whole clip); the frame
with the largest variance of the Laplacian (grey, at the output size) wins its bucket. An image folder is
bucketed the same way by position, with buckets of one image unless it holds more than ``max_frames``.
Frames are written as ``frame_<source index:06d>.<ext>`` (pixels as displayed, no EXIF), so sorted names
are in time order and the source frame index of each is in its name and in ``frames.json``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import ImageOps

from preprocess.atomic_io import atomic_path
from preprocess.errors import S3dgsError
from preprocess.images import list_images, open_image, to_rgb8
from preprocess.video_depth.frames import iter_sampled_frames, plan_sampling, probe_video, processed_size

MIN_FRAMES = 3       # fewer cannot make a reconstruction worth training on
JPEG_QUALITY = 95


class SceneError(S3dgsError, ValueError):
    """Input or result that stops the pipeline; the message is one line naming the file and the fix."""


@dataclass(frozen=True)
class FrameRecord:
    """One kept frame: file ``name``, ``source_index`` (video frame or position in the folder), ``time_s``
    (None for a folder) and ``sharpness`` (variance of the Laplacian, grey levels squared)."""

    name: str
    source_index: int
    time_s: float | None
    sharpness: float


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image of RGB uint8 ``[H, W, 3]`` (higher = sharper)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def bucket_length(n_source: int, src_fps: float, fps: float | None, max_frames: int) -> float:
    """Source frames per bucket (>= 1): ``src_fps / fps``, widened so ``n_source`` frames (if known, > 0)
    make at most ``max_frames`` buckets. ``fps`` None: one frame per bucket before widening."""
    length = src_fps / fps if fps else 1.0
    if max_frames > 0 and n_source > 0:
        length = max(length, n_source / max_frames)
    return max(length, 1.0)


def sharpest_per_bucket(frames: Iterable[tuple[int, np.ndarray]], length: float, max_frames: int
                        ) -> Iterator[tuple[int, np.ndarray, float]]:
    """From ``(source index, RGB [H, W, 3])`` in index order, yield ``(index, rgb, sharpness)`` of the
    sharpest frame of each bucket ``floor(index / length)``, at most ``max_frames`` (<= 0: no cap).
    Holds one candidate frame at a time."""
    best: tuple[int, np.ndarray, float] | None = None
    kept = 0
    for index, rgb in frames:
        score = sharpness(rgb)
        if best is not None and math.floor(index / length) != math.floor(best[0] / length):
            yield best
            kept += 1
            best = None
            if 0 < max_frames <= kept:
                return
        if best is None or score > best[2]:
            best = (index, rgb, score)
    if best is not None:
        yield best


def write_frame(path: Path, rgb: np.ndarray) -> None:
    """Write RGB uint8 ``[H, W, 3]`` atomically as JPEG (quality 95) or PNG, by ``path``'s suffix."""
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if path.suffix.lower() in (".jpg", ".jpeg") else []
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(rgb[..., ::-1]), params):
            raise OSError(f"{path}: cannot write image")


def _folder_frames(paths: list[Path], max_size: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, rgb [H, W, 3] uint8)`` of each image, upright: the EXIF orientation is applied here, because the
    frames are written anew (untagged) and SfM runs on them, so they should look as the photos are shown."""
    for i, path in enumerate(paths):
        rgb = to_rgb8(ImageOps.exif_transpose(open_image(path)))
        size = processed_size(rgb.shape[1], rgb.shape[0], max_size)
        if size != (rgb.shape[1], rgb.shape[0]):
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        yield i, rgb


def sample_frames(source: Path, frames_dir: Path, fps: float | None, max_frames: int, max_size: int, ext: str,
                  progress=None) -> dict:
    """Write the sharpest frame of each bucket of ``source`` (video file or image folder) into ``frames_dir``.

    ``fps``: buckets per second of video; must be None for a folder. Returns the ``frames.json`` record:
    source, sampling and one :class:`FrameRecord` per written frame. Raises :class:`SceneError` (too few
    frames, ``--fps`` on a folder) and :class:`~preprocess.video_depth.frames.VideoReadError`."""
    if source.is_dir():
        if fps is not None:
            raise SceneError(f"--fps {fps}: {source} is an image folder (no frame rate); leave --fps out, "
                             "use --max-frames to thin it")
        paths = list_images(source)
        length, src_fps = bucket_length(len(paths), 1.0, None, max_frames), None
        stream, total = _folder_frames(paths, max_size), len(paths)
    else:
        if fps is None or not fps > 0:
            raise SceneError(f"--fps {fps}: must be > 0 (frames kept per second of video)")
        info = probe_video(source)
        sampling = plan_sampling(info, target_fps=-1, max_len=-1, max_res=max_size)
        src_fps = sampling.src_fps
        length = bucket_length(info.frame_count, src_fps, fps, max_frames)
        stream, total = iter_sampled_frames(info, sampling), info.frame_count if info.frame_count > 0 else None
    frames_dir.mkdir(parents=True, exist_ok=True)
    records, last = [], -1
    for index, rgb, score in sharpest_per_bucket(stream, length, max_frames):
        name = f"frame_{index:06d}.{ext}"
        write_frame(frames_dir / name, rgb)
        records.append(FrameRecord(name, index, None if src_fps is None else index / src_fps, score))
        if progress is not None:
            progress.total = total
            progress.update(index - last)
            last = index
    if len(records) < MIN_FRAMES:
        raise SceneError(f"{source}: only {len(records)} frame(s) sampled, at least {MIN_FRAMES} are needed; "
                         "use a longer clip or a higher --fps")
    return {"input": str(source), "kind": "folder" if source.is_dir() else "video", "source_fps": src_fps,
            "bucket_frames": length, "size": list(rgb.shape[1::-1]), "frames": [asdict(r) for r in records]}
