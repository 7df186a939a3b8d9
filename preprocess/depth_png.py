"""16-bit depth PNGs and their sidecar ``depth_meta.json``: the contract between preprocess and training.

The prior for image ``<stem>.<ext>`` is ``<key>.png`` in the output folder (:func:`prior_keys`: the key is
the stem, or the image's relative path when stems repeat across subfolders): one channel, uint16, the
image's width x height as stored (EXIF orientation ignored, see docs/formats.md). A 16-bit value ``v`` maps
back to the model's float output ``x = min + v / 65535 * (max - min)``, with ``min``/``max`` recorded per
image in ``depth_meta.json``. ``kind`` says what ``x`` is: ``inverse_depth`` (relative, larger = nearer,
unknown scale and shift) or ``depth`` (metric, metres). See docs/formats.md.

Several writers may share one folder (``--shard K/N`` jobs of a Slurm array): :func:`update_meta`
merges their entries into the single ``depth_meta.json`` under an exclusive lock on the hidden file
``.depth_meta.json.lock`` (read, merge, atomic write), so no shard loses another's entries and a
reader always sees a complete file. One file rather than per-shard files merged on read, so that
readers stay trivial (``DepthMeta.load``) and a folder is self-describing.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np
from filelock import FileLock

from preprocess.atomic_io import atomic_write_bytes, atomic_write_json
from preprocess.errors import S3dgsError

META_NAME = "depth_meta.json"
LOCK_NAME = ".depth_meta.json.lock"
FORMAT = "s3dgs-depth-png/1"
VALUE_KINDS = ("inverse_depth", "depth")
MAX16 = 65535
NODATA = 0  # the 16-bit level of pixels without a value, in maps whose meta entry has "nodata"


class DepthFileError(S3dgsError, ValueError):
    """A depth PNG or depth_meta.json that cannot be used; the message names the file and the fix."""


def quantize(values: np.ndarray, vmin: float | None = None, vmax: float | None = None
             ) -> tuple[np.ndarray, float, float]:
    """Map float ``values [H, W]`` linearly to uint16 ``0..65535``.

    ``vmin``/``vmax`` default to the map's own finite min/max (per-image normalisation); pass them to
    share one range across a sequence. Non-finite values become 0. Returns ``(png, vmin, vmax)``;
    a constant map gives all zeros with ``vmin == vmax``.
    """
    x = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(x)
    if vmin is None:
        vmin = float(x[finite].min()) if finite.any() else 0.0
    if vmax is None:
        vmax = float(x[finite].max()) if finite.any() else 0.0
    span = vmax - vmin
    if span <= 0:
        return np.zeros(x.shape, np.uint16), float(vmin), float(vmax)
    q = np.rint((np.where(finite, x, vmin) - vmin) / span * MAX16)
    return np.clip(q, 0, MAX16).astype(np.uint16), float(vmin), float(vmax)


def quantize_with_holes(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Like :func:`quantize`, but level 0 is kept for the pixels without a value (NaN in ``values [H, W]``):
    the finite values span levels 1..65535 of the map's own range, and the image's meta entry gets
    ``"nodata": 0`` (:data:`NODATA`) so that :meth:`DepthMeta.to_float` decodes level 0 as NaN. Returns
    ``(png, vmin, vmax)``; ``vmin`` is one level below the smallest value. ``values`` needs a finite value."""
    x = np.asarray(values, dtype=np.float64)
    valid = np.isfinite(x)
    lo, hi = float(x[valid].min()), float(x[valid].max())
    png, vmin, vmax = quantize(np.where(valid, x, np.nan), lo - (hi - lo) / (MAX16 - 1), hi)
    png[valid] = np.maximum(png[valid], 1)  # a constant map: all levels 0 from quantize, decoding to vmin == hi
    return png, vmin, vmax


def prior_keys(names: Sequence[str]) -> list[str]:
    """The key of each image (``names``: paths relative to an image folder, POSIX) in a depth folder: its prior is
    ``<key>.png`` and its depth_meta.json entry ``images.<key>``. The key is the stem when every stem is unique,
    else the path without extension relative to the deepest folder holding every image (Blender's
    ``train/r_0.png`` and ``test/r_0.png`` -> ``train/r_0``, ``test/r_0``), so it does not depend on which
    ancestor folder was listed. Raises :class:`DepthFileError` when two images still share a key."""
    paths = [PurePosixPath(n) for n in names]
    keys = [p.stem for p in paths]
    if len(set(keys)) < len(keys):
        root = os.path.commonpath([p.parent.as_posix() for p in paths])
        keys = [p.relative_to(root).with_suffix("").as_posix() if root else p.with_suffix("").as_posix()
                for p in paths]
    first: dict[str, str] = {}
    for name, key in zip(names, keys):
        if key in first:
            raise DepthFileError(f"{name}: same name as {first[key]} but for the extension: both would write "
                                 f"{key}.png (depth prior); rename one of them")
        first[key] = name
    return keys


def dequantize(png: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Inverse of :func:`quantize`: uint16 ``[H, W]`` -> float32 ``[H, W]`` in the model's units."""
    return (vmin + png.astype(np.float64) / MAX16 * (vmax - vmin)).astype(np.float32)


def write_depth_png(path: str | Path, png: np.ndarray) -> None:
    """Write a uint16 ``[H, W]`` array as a single-channel 16-bit PNG, atomically."""
    if png.dtype != np.uint16 or png.ndim != 2:
        raise ValueError(f"depth PNG must be uint16 [H, W], got {png.dtype} {png.shape}")
    ok, buf = cv2.imencode(".png", png)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    atomic_write_bytes(path, buf.tobytes())


def read_depth_png(path: str | Path) -> np.ndarray:
    """Read a 16-bit single-channel depth PNG as uint16 ``[H, W]``.

    Raises :class:`DepthFileError` if the file is missing, does not decode, or is not 16-bit
    single-channel (8-bit or 3-channel maps lose precision: regenerate with preprocess.generate_depth).
    """
    path = Path(path)
    if not path.is_file():
        raise DepthFileError(f"{path}: missing; run preprocess.generate_depth on its image folder")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DepthFileError(f"{path}: not a readable PNG; delete it and rerun preprocess.generate_depth")
    if img.dtype != np.uint16 or img.ndim != 2:
        raise DepthFileError(
            f"{path}: expected a 16-bit single-channel PNG, got {img.dtype} with shape {img.shape}; "
            "regenerate it with python -m preprocess.generate_depth")
    return img


def write_confidence_png(path: str | Path, confidence: np.ndarray) -> None:
    """Write a confidence map float ``[H, W]`` in [0, 1] (NaN: 0) as a 16-bit PNG ``v = c * 65535``,
    atomically."""
    c = np.nan_to_num(np.asarray(confidence, np.float64), nan=0.0)
    write_depth_png(path, quantize(np.clip(c, 0.0, 1.0), 0.0, 1.0)[0])


def read_confidence(path: str | Path) -> np.ndarray:
    """Read a confidence PNG written by :func:`write_confidence_png` as float32 ``[H, W]`` in [0, 1]. Raises
    :class:`DepthFileError`."""
    return dequantize(read_depth_png(path), 0.0, 1.0)


@dataclass
class DepthMeta:
    """Contents of ``depth_meta.json``: what the 16-bit values in one folder mean.

    ``images`` maps an image's key (:func:`prior_keys`) to ``{"min": float, "max": float, "width": int, "height": int,
    "source": file name}``, optionally ``"nodata": level`` (pixels at that level have no value: decoded as NaN)
    and ``"confidence": path`` (its confidence map, relative to the folder: :func:`read_confidence`); ``extra``
    holds backend details (Space id, input size, quantisation note).
    """

    backend: str
    model: str
    kind: str = "inverse_depth"
    relative: bool = True
    units: str | None = None
    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT

    def __post_init__(self) -> None:
        if self.kind not in VALUE_KINDS:
            raise DepthFileError(f"{META_NAME}: kind must be one of {VALUE_KINDS}, got {self.kind!r}")

    def bad_range(self) -> str | None:
        """Why an image entry's ``min``/``max`` cannot decode its PNG (not finite numbers with min <= max; JSON
        has no NaN, Python's json writes and reads one anyway), or None when every entry can."""
        for stem, rec in self.images.items():
            lo, hi = rec.get("min"), rec.get("max")
            numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi))
            if not (numbers and math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                return f"{stem!r} has min {lo!r} and max {hi!r}, not finite numbers with min <= max"
        return None

    def entry(self, key: str) -> dict[str, Any]:
        """Image ``key``'s entry (``min``, ``max``, optional ``nodata``, ...); :class:`DepthFileError` without one."""
        try:
            return self.images[key]
        except KeyError:
            raise DepthFileError(f"{META_NAME}: no entry for {key!r}; rerun preprocess.generate_depth") from None

    def to_float(self, key: str, png: np.ndarray) -> np.ndarray:
        """Decode image ``key``'s uint16 map to float32 in the model's units; NaN where it has no value."""
        rec = self.entry(key)
        x = dequantize(png, rec["min"], rec["max"])
        if rec.get("nodata") is not None:
            x[png == rec["nodata"]] = np.nan
        return x

    def save(self, folder: str | Path) -> None:
        """Write ``folder/depth_meta.json`` atomically; refuses entries :meth:`bad_range` rejects."""
        problem = self.bad_range()
        if problem:
            raise ValueError(f"{Path(folder) / META_NAME}: not written, image {problem}")
        atomic_write_json(Path(folder) / META_NAME, asdict(self))

    @classmethod
    def load(cls, folder: str | Path) -> "DepthMeta | None":
        """Read ``folder/depth_meta.json``; ``None`` if there is none."""
        path = Path(folder) / META_NAME
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
            meta = cls(**known)
            problem = meta.bad_range()
        except (json.JSONDecodeError, TypeError, KeyError, AttributeError) as e:
            raise DepthFileError(f"{path}: not a valid depth_meta.json ({e}); delete it and rerun "
                                 "preprocess.generate_depth") from None
        if problem:
            raise DepthFileError(f"{path}: image {problem}; delete that image's PNG and entry (or the folder) and "
                                 "rerun preprocess.generate_depth")
        return meta


def same_source(a: DepthMeta, b: DepthMeta) -> bool:
    """True if two metas describe priors from the same backend and model (so their entries can mix)."""
    return (a.backend, a.model, a.kind) == (b.backend, b.model, b.kind)


def update_meta(folder: str | Path, header: DepthMeta, entries: dict[str, dict[str, Any]],
                drop: Iterable[str] = (), replace: bool = False, lock_timeout_s: float = 120.0) -> DepthMeta:
    """Merge ``entries`` into ``folder/depth_meta.json`` under a file lock and return the merged meta.

    The written header (backend, model, kind, units, extra) is ``header``'s; image entries are those on
    disk minus ``drop``, updated with ``entries``. If the file on disk comes from another backend/model,
    raise :class:`DepthFileError` unless ``replace`` (then its entries are discarded).
    """
    folder = Path(folder)
    with FileLock(str(folder / LOCK_NAME), timeout=lock_timeout_s):
        current = DepthMeta.load(folder)
        if current is not None and not same_source(current, header):
            if not replace:
                raise DepthFileError(
                    f"{folder / META_NAME}: holds {current.backend} priors from {current.model} ({current.kind}), "
                    f"this run makes {header.backend} priors from {header.model} ({header.kind}); "
                    "use another output folder or --overwrite")
            current = None
        images = dict(current.images) if current is not None else {}
        for stem in drop:
            images.pop(stem, None)
        images.update(entries)
        merged = DepthMeta(backend=header.backend, model=header.model, kind=header.kind,
                           relative=header.relative, units=header.units, images=images,
                           extra=dict(header.extra))
        merged.save(folder)
        return merged
