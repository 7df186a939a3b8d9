"""Video Depth Anything as a depth backend: the folder's images, sorted by name, are ONE video.

``generate_depth --backend vda --model vits|vitb|vitl|metric_vits|...`` runs the official batch
algorithm (:mod:`preprocess.video_depth.inference`) over the whole sequence and writes every frame with
ONE min/max (``normalization: per_sequence``), so 16-bit values of different frames stay comparable.

Resume by whole windows: each 32-frame window's raw network output is saved atomically under
``<output>/.vda_windows/`` (about 4 bytes x 32 x network pixels per window, e.g. 61 MB at 518x924) and
reused by a rerun with the same frames, checkpoint, input size and precision; the folder is deleted
once every PNG is written. Stitching is deterministic, so a resumed run writes the same PNGs as an
uninterrupted one. Frames that cannot be decoded, or whose size differs from the first frame's, are
reported and left out of the sequence.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from preprocess.atomic_io import atomic_path, atomic_write_json
from preprocess.backends import DEFAULT_MODEL, BackendError, BackendOptions, DepthBackend, DepthResult
from preprocess.devices import pick_device
from preprocess.images import ImageReadError, load_rgb
from preprocess.weights import WeightsError, checkpoint_path, resolve

CACHE_DIR = ".vda_windows"
FINGERPRINT = "fingerprint.json"


def _resolve_vda(model: str):
    """Weights-table entry of a VDA checkpoint; the transformers default model means ``vits``."""
    try:
        entry = resolve("vits" if model == DEFAULT_MODEL else model)
    except WeightsError:
        entry = None
    if entry is None or entry.filename is None or "video_depth_anything" not in entry.name:
        raise BackendError(f"--model {model!r}: the vda backend needs a Video Depth Anything checkpoint: "
                           "vits, vitb, vitl, metric_vits, metric_vitb or metric_vitl")
    return entry


class FrameReader:
    """Decoded frames by sequence index, keeping only the few that later windows reuse."""

    def __init__(self, paths: list[Path], keep: int = 40):
        self.paths, self.keep, self.frames = paths, keep, {}

    def __getitem__(self, i: int) -> np.ndarray:
        if i not in self.frames:
            if len(self.frames) >= self.keep:
                for old in sorted(self.frames)[1:len(self.frames) - self.keep + 2]:  # frame 0 is reused by all
                    del self.frames[old]
            self.frames[i] = load_rgb(self.paths[i])
        return self.frames[i]


class VDABackend(DepthBackend):
    """Video Depth Anything over the ordered image list, one shared value range."""

    name = "vda"
    normalization = "per_sequence"

    def __init__(self, model: str = "vits", device: str = "auto", checkpoint_root: str | None = None,
                 input_size: int = 518, fp32: bool = False, work_dir: str | Path | None = None,
                 quiet: bool = False) -> None:
        entry = _resolve_vda(model)
        super().__init__(entry.name)
        self.encoder = entry.name.rsplit("_", 1)[1]
        self.metric = entry.metric
        self.kind, self.units = ("depth", "m") if self.metric else ("inverse_depth", None)
        if input_size < 14:
            raise BackendError(f"--input-size {input_size}: must be at least 14")
        self.device_name, self.checkpoint_root, self.input_size = device, checkpoint_root, input_size
        self.fp32, self.work_dir = fp32, Path(work_dir) if work_dir is not None else None
        self.quiet = quiet
        self.net: Any = None

    @classmethod
    def from_options(cls, options: BackendOptions) -> "VDABackend":
        return cls(options.model, options.device, options.checkpoint_root, options.input_size, options.fp32,
                   options.work_dir, options.quiet)

    def open(self) -> None:
        from preprocess.video_depth import CheckpointError, build_model

        self.device = pick_device(self.device_name)
        try:
            self.checkpoint = checkpoint_path(self.model, self.checkpoint_root)
            self.net = build_model(self.encoder, self.checkpoint, self.metric).to(self.device)
        except (WeightsError, CheckpointError) as e:
            raise BackendError(str(e)) from None

    def close(self) -> None:
        self.net = None

    @property
    def precision(self) -> str:
        return "fp16" if getattr(self, "device", None) is not None and self.device.type == "cuda" and not self.fp32 \
            else "fp32"

    @property
    def extra(self) -> dict[str, Any]:
        return {**super().extra, "encoder": self.encoder, "input_size": self.input_size, "precision": self.precision,
                "upsampling": "bilinear"}

    def predict(self, paths: Sequence[Path]) -> Iterator[DepthResult]:
        errors, frames = self._check_frames(paths)
        if frames:
            windows, cache = self._windows(frames)
            vmin, vmax = np.inf, -np.inf
            for depth in self._stitched(windows, frames):  # pass 1: the sequence's value range (finite values)
                finite = depth[np.isfinite(depth)]
                if finite.size:
                    vmin, vmax = min(vmin, float(finite.min())), max(vmax, float(finite.max()))
            stitched = self._stitched(windows, frames)  # pass 2: the same frames again, now with the range
        index = {p: i for i, p in enumerate(frames)}
        for path in paths:
            if path in errors:
                yield DepthResult(path, None, error=errors[path])
            else:
                yield DepthResult(path, next(stitched), value_range=(vmin, vmax),
                                  info={"sequence_index": index[path]})
        if frames:
            shutil.rmtree(cache, ignore_errors=True)

    def _check_frames(self, paths: Sequence[Path]) -> tuple[dict[Path, str], list[Path]]:
        """Decode every image once: unreadable ones and ones of another size are errors, the rest the sequence."""
        errors, frames, size = {}, [], None
        for path in paths:
            try:
                shape = load_rgb(path).shape[:2]
            except ImageReadError as e:
                errors[path] = str(e)
                continue
            size = size or shape
            if shape != size:
                errors[path] = (f"{path}: {shape[1]}x{shape[0]} differs from the sequence's {size[1]}x{size[0]} "
                                "(first frame); resize it or move it to another folder")
            else:
                frames.append(path)
        return errors, frames

    def _fingerprint(self, frames: list[Path]) -> dict[str, Any]:
        stat = self.checkpoint.stat()
        return {"model": self.model, "checkpoint": [stat.st_size, stat.st_mtime_ns], "input_size": self.input_size,
                "precision": self.precision,
                "frames": hashlib.sha256(json.dumps([[p.name, p.stat().st_size, p.stat().st_mtime_ns]
                                                     for p in frames]).encode()).hexdigest()}

    def _windows(self, frames: list[Path]) -> tuple[list[Path], Path]:
        """Raw network output of every window, computed or taken from the cache; returns the files and the cache."""
        from tqdm import tqdm

        from preprocess.video_depth.inference import network_size, run_window, window_frames

        cache = self.work_dir / CACHE_DIR if self.work_dir is not None else Path(tempfile.mkdtemp(prefix="vda-"))
        fingerprint = self._fingerprint(frames)
        try:
            same = json.loads((cache / FINGERPRINT).read_text()) == fingerprint
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(cache, ignore_errors=True)
            cache.mkdir(parents=True)
            atomic_write_json(cache / FINGERPRINT, fingerprint)
        reader = FrameReader(frames)
        height, width = reader[0].shape[:2]
        size = network_size(height, width, self.input_size)
        plan = window_frames(len(frames))
        files = [cache / f"window_{k:05d}.npy" for k in range(len(plan))]
        with tqdm(total=len(files), unit="window", desc="vda windows (32 frames)", disable=self.quiet,
                  file=sys.stderr, dynamic_ncols=True, leave=False) as bar:
            for path, indices in zip(files, plan):
                if not _readable(path, size):
                    depth = run_window(self.net, reader, indices, size, self.precision, self.device).numpy()
                    self.calls += 1
                    with atomic_path(path) as tmp, open(tmp, "wb") as f:
                        np.save(f, depth)
                bar.update(1)
        return files, cache

    def _stitched(self, windows: list[Path], frames: list[Path]) -> Iterator[np.ndarray]:
        import torch

        from preprocess.video_depth.inference import stitch_windows, upsample

        height, width = load_rgb(frames[0]).shape[:2]
        depths = (upsample(torch.from_numpy(np.load(f)), height, width) for f in windows)
        return stitch_windows(depths, len(frames), self.metric)


def _readable(path: Path, size: tuple[int, int]) -> bool:
    """True if ``path`` holds a complete cached window of network size ``size``."""
    try:
        return np.load(path, mmap_mode="r").shape[1:] == size
    except (OSError, ValueError):
        return False
