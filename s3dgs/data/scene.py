"""Load a dataset into memory at training resolution: images, cameras, masks, ground truth, priors.

``load_scene`` reads any supported layout (see :mod:`s3dgs.data.frames`), downscales, undistorts
with OpenCV, splits train/test (every ``test_every``-th image is a test view unless the layout fixes
the split), and attaches the user's masks, the depth prior and ``gt_depth/<key>.npy`` of each view
when present. The depth prior comes from ``depth_dir`` when given, else from the frames' sensor depth
(nerfstudio ``depth_file_path``: metric depth, :func:`attach_sensor_depth`). Transparent images are composited on the scene's background and keep their alpha.
A view's key names its files (priors, ground truth, renders, per-view metrics): the image's stem, or its
relative path when stems repeat (``preprocess.depth_png.prior_keys``, docs/formats.md). What is kept is compact
(:class:`View`): images as uint8 within a memory budget, priors as their 16-bit levels, masks as bool.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, TypeVar

import cv2
import numpy as np
import torch
from PIL import Image as PILImage
from scipy import ndimage

from preprocess.depth_files import DepthReadError, read_depth_file
from preprocess.depth_png import MAX16, DepthFileError, prior_keys
from preprocess.images import ImageReadError, image_size, open_image, to_rgb8
from s3dgs.data.frames import IMAGE_EXTS, DataError, Distortion, Frame, read_layout
from s3dgs.data.image_cache import GIB, ImageCache, StoredImage, cache_budget
from s3dgs.data.priors import load_priors
from s3dgs.data.storage import Levels, to_float, to_uint8

log = logging.getLogger(__name__)
T = TypeVar("T")


class _Compact:
    """A :class:`View` field stored compact and read as float32: a dataclass descriptor field, set with a float
    tensor (kept as it is) or a compact form, read as ``decode(view, stored)``; ``optional`` fields default to
    None."""

    def __init__(self, decode: Callable[[View, Any], torch.Tensor | None], optional: bool = True):
        self.decode, self.optional = decode, optional

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = f"_{name}"

    def __get__(self, view: View | None, owner: type | None = None) -> Any:
        if view is None:  # the dataclass asks for the default
            if self.optional:
                return None
            raise AttributeError(self.attr)
        return self.decode(view, getattr(view, self.attr))

    def __set__(self, view: View, value: Any) -> None:
        setattr(view, self.attr, value)


def _decoded(view: View, stored: torch.Tensor | Levels | None) -> torch.Tensor | None:
    return torch.from_numpy(stored.decode()) if isinstance(stored, Levels) else stored


def _prior(view: View, stored: torch.Tensor | Levels | None) -> torch.Tensor | None:
    if not isinstance(stored, Levels):
        return stored
    return torch.from_numpy(np.where(view.prior_valid.numpy(), stored.decode(), np.float32(0)))


@dataclass
class View:
    """One posed image at training resolution, kept compact on the CPU (the image on the training device).

    A loaded view keeps its image as uint8 in its scene's :class:`~s3dgs.data.image_cache.ImageCache` (decoded
    again on demand beyond the cache's budget: a :class:`~s3dgs.data.image_cache.StoredImage`), its prior and its
    confidence as uint16 :class:`~s3dgs.data.storage.Levels` (or float32 for a prior not read from 16-bit levels)
    and masks as bool. ``image``, ``alpha``, ``prior`` and ``prior_confidence`` read as float32 CPU tensors decoded
    on each access (new tensors: writing to them changes nothing stored); :meth:`rgba_on` gives the image and alpha
    on another device. A view made in memory keeps the float tensors it is given.

    ``image`` is composited on the scene's background ``bg``; with ``alpha`` (images with an alpha channel)
    the premultiplied colour is ``straight * alpha = image - bg * (1 - alpha)``, so the image on another
    background ``bg2`` is ``image + (bg2 - bg) * (1 - alpha)``."""

    name: str  # the image's path relative to the layout's image root (unique)
    key: str  # what its files are named after: the stem, or the relative path when stems repeat (prior_keys)
    image: torch.Tensor = _Compact(lambda v, _: v.rgba_on("cpu")[0], optional=False)  # [H, W, 3] float32 in [0, 1]
    K: torch.Tensor  # [3, 3] float32
    camtoworld: torch.Tensor  # [4, 4] float32, OpenCV axes
    mask: torch.Tensor | None = None  # [H, W] bool, pixels that count (user masks, undistortion border)
    gt_depth: torch.Tensor | None = None  # [H, W] float32 z-depth, 0 = unknown
    prior: torch.Tensor | None = _Compact(_prior)  # [H, W] float32 in the prior's units, 0 where not valid
    prior_valid: torch.Tensor | None = None  # [H, W] bool
    point_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # sparse points seen
    remap: tuple[np.ndarray, np.ndarray] | None = None  # undistortion maps at training resolution (one per camera)
    alpha: torch.Tensor | None = _Compact(lambda v, _: v.rgba_on("cpu")[1] if v.has_alpha else None)  # [H, W] in [0, 1]
    prior_step: float = 0.0  # the prior's quantisation step (one 16-bit level) in its units; 0 = unknown
    prior_confidence: torch.Tensor | None = _Compact(_decoded)  # [H, W] float32 in [0, 1]

    @property
    def height(self) -> int:
        return self._image.height if isinstance(self._image, StoredImage) else self._image.shape[0]

    @property
    def width(self) -> int:
        return self._image.width if isinstance(self._image, StoredImage) else self._image.shape[1]

    @property
    def has_alpha(self) -> bool:
        """Whether the image has an alpha channel (known without decoding it)."""
        return self._image.has_alpha if isinstance(self._image, StoredImage) else self._alpha is not None

    def rgba_on(self, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The image ``[H, W, 3]`` and its alpha ``[H, W]`` (None when opaque), float32 in [0, 1] on ``device``
        (a CUDA scene keeps its images there: no copy)."""
        if not isinstance(self._image, StoredImage):
            return to_float(self._image.to(device)), None if self._alpha is None else self._alpha.to(device)
        pixels = to_float(self._image.pixels().to(device))
        return pixels[..., :3], (pixels[..., 3] if self._image.has_alpha else None)


@dataclass
class Scene:
    train: list[View]
    test: list[View]
    points: torch.Tensor  # [P, 3] float32 sparse points, may be empty
    points_rgb: torch.Tensor  # [P, 3] float32 in [0, 1]
    kind: str  # dataset layout
    prior_kind: str | None = None  # "inverse_depth" or "depth" when depth priors are attached
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)  # RGB the images are composited on
    prior_normalization: str = "per_image"  # "per_sequence": one scale/shift relates every prior to the truth
    prior_source: str | None = None  # "depth_dir" (priors from a folder) or "sensor" (nerfstudio depth_file_path)

    @property
    def views(self) -> list[View]:
        return self.train + self.test

    def extent(self) -> float:
        """Scene scale as in 3DGS: 1.1 x the largest camera distance from the cameras' centroid."""
        centres = torch.stack([v.camtoworld[:3, 3] for v in self.views])
        return 1.1 * float((centres - centres.mean(0)).norm(dim=-1).max().clamp_min(1e-6))


def default_background(kind: str) -> tuple[float, float, float]:
    """The layout's background: white for Blender (NeRF-synthetic renders), black for the others."""
    return (1.0, 1.0, 1.0) if kind == "blender" else (0.0, 0.0, 0.0)


def resolve_background(background: Sequence[float] | str | None, kind: str) -> tuple[float, float, float]:
    """``data.background`` -> RGB in [0, 1]: ``None`` and ``"random"`` (drawn per step by the trainer) give
    the layout's :func:`default_background`, three numbers are used as they are."""
    if background is None or background == "random":
        return default_background(kind)
    try:
        rgb = () if isinstance(background, str) else tuple(float(c) for c in background)
    except (TypeError, ValueError):
        rgb = ()
    if len(rgb) != 3 or not all(0.0 <= c <= 1.0 for c in rgb):
        raise DataError(f"data.background={background!r}: use null (the layout's default), random, or [r, g, b] "
                        "in [0, 1]")
    return rgb


def _open(path: Path, read: Callable[[Path], T] = open_image) -> T:
    """``read(path)`` of a training image file (preprocess's :func:`open_image`, or :func:`image_size` for the
    header only); :class:`DataError` for a type we do not train on or a file that does not decode."""
    if path.suffix.lower() not in IMAGE_EXTS:
        raise DataError(f"{path}: {path.suffix} is not a supported training image type "
                        f"({', '.join(sorted(IMAGE_EXTS))}); convert it to PNG")
    try:
        return read(path)
    except ImageReadError as e:
        raise DataError(str(e)) from None


def _has_alpha(im: PILImage.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)


def _read_rgb(path: Path, background: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Image file -> float32 ``[H, W, 3]`` in [0, 1] (alpha composited on ``background``) and its alpha
    ``[H, W]`` float32 in [0, 1] (None without an alpha channel).

    Decoding and mode handling are preprocess's (the same pixels the depth priors saw): stored pixel order, the
    EXIF Orientation tag ignored, as the poses of every supported layout refer to it (docs/formats.md)."""
    return _composited(_open(path), path, background)


def _composited(im: PILImage.Image, path: Path, background: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`_read_rgb` of the opened image ``im`` of ``path``."""
    if not _has_alpha(im):
        return _pixels(im, path, "RGB").astype(np.float32) / 255.0, None
    arr = _pixels(im, path, "RGBA").astype(np.float32) / 255.0
    alpha = arr[..., 3:]
    return arr[..., :3] * alpha + background * (1 - alpha), alpha[..., 0]


def _pixels(im: PILImage.Image, path: Path, mode: str) -> np.ndarray:
    """``im`` as uint8 ``[H, W, 3]`` (``mode="RGB"``: preprocess's :func:`to_rgb8`) or ``[H, W, 4]`` (``"RGBA"``)."""
    try:
        return to_rgb8(im) if mode == "RGB" else np.asarray(im.convert("RGBA"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable image ({e}); remove it or re-export it") from None


def decode_image(path: Path, size: tuple[int, int], remap: tuple[np.ndarray, np.ndarray] | None,
                 background: np.ndarray) -> np.ndarray:
    """The training image of ``path`` at ``size = (W, H)``, undistorted through ``remap``: uint8 ``[H, W, 3]``, or
    ``[H, W, 4]`` with its alpha (the colour composited on ``background`` first, then resampled in float32 and
    rounded). An 8-bit opaque file at its own size is its own pixels."""
    im = _open(path)
    if remap is None and im.size == size and not _has_alpha(im):
        return _pixels(im, path, "RGB")
    rgb, alpha = _composited(im, path, background)
    channels = [rgb] if alpha is None else [rgb, alpha[..., None]]
    return to_uint8(_remap(_resize(np.concatenate(channels, -1), size, cv2.INTER_AREA), remap, cv2.INTER_LINEAR))


def _read_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Mask image (greyscale or 1-bit, nonzero = keep) -> ``[H, W]`` bool at ``size = (W, H)`` (nearest)."""
    try:
        m = np.asarray(open_image(path))
    except ImageReadError as e:
        raise DataError(str(e)) from None
    if m.ndim != 2:
        raise DataError(f"{path}: a mask must have one channel (greyscale or 1-bit, nonzero = keep); re-save it")
    w, h = m.shape[1], m.shape[0]
    if abs(w / h - size[0] / size[1]) > 0.01:
        raise DataError(f"{path}: mask is {w}x{h}, a different aspect ratio than its image; it must match the image")
    return _resize((m != 0).astype(np.uint8), size, cv2.INTER_NEAREST) > 0


def _resize(a: np.ndarray, size: tuple[int, int], interp: int) -> np.ndarray:
    return a if a.shape[1::-1] == size else cv2.resize(a, size, interpolation=interp)


def _undistort(K: np.ndarray, dist: Distortion, size: tuple[int, int]
               ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Pinhole intrinsics ``[3, 3]`` of the undistorted image and the maps ``[H, W]`` float32 (OpenCV pixel
    coordinates) from it to the distorted source image with intrinsics ``K``. The new intrinsics zoom in just
    enough that every pixel sees the source image (as ``colmap image_undistorter``), so no black border enters
    the losses or the metrics."""
    K = K.copy()
    K[:2, 2] -= 0.5  # our pixel centres are at +0.5, OpenCV's at integers
    coeffs = np.asarray(dist.coeffs, np.float64)
    if dist.model == "fisheye":
        new_K = cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(K, coeffs, size, np.eye(3), balance=0.0)
        maps = cv2.fisheye.initUndistortRectifyMap(K, coeffs, np.eye(3), new_K, size, cv2.CV_32FC1)
    else:
        new_K, _ = cv2.getOptimalNewCameraMatrix(K, coeffs, size, 0.0, size)
        maps = cv2.initUndistortRectifyMap(K, coeffs, None, new_K, size, cv2.CV_32FC1)
    new_K = new_K.copy()
    new_K[:2, 2] += 0.5
    return new_K, maps


def _remap(a: np.ndarray, remap: tuple[np.ndarray, np.ndarray] | None, interp: int) -> np.ndarray:
    """``a`` resampled through the undistortion maps; samples within half a pixel of the edge take the edge."""
    return a if remap is None else cv2.remap(a, *remap, interp, borderMode=cv2.BORDER_REPLICATE)


def _inside(remap: tuple[np.ndarray, np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """``[H, W]`` bool: undistorted pixels whose source lies on the source image (``size = (W, H)``)."""
    x, y = remap
    return (x >= -0.5) & (x <= size[0] - 0.5) & (y >= -0.5) & (y <= size[1] - 0.5)


def _tensor(a: np.ndarray | None) -> torch.Tensor | None:
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a))


Undistortion = tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None, torch.Tensor | None]


def _undistortion(K: np.ndarray, dist: Distortion | None, size: tuple[int, int],
                  cameras: dict[tuple, Undistortion]) -> Undistortion:
    """``(K [3, 3] of the training image, undistortion maps, [H, W] bool pixels inside the source image)`` for a
    camera with intrinsics ``K`` and ``dist`` at ``size``; the maps and mask are made once per camera
    (``cameras`` holds them) and shared by its views. None, None for a pinhole camera."""
    if dist is None:
        return K, None, None
    key = (K.tobytes(), dist, size)
    if key not in cameras:
        new_K, remap = _undistort(K, dist, size)
        cameras[key] = new_K, remap, torch.from_numpy(_inside(remap, size))
    return cameras[key]


def _load_view(frame: Frame, key: str, data_dir: Path, downscale: int, background: np.ndarray, cache: ImageCache,
               cameras: dict[tuple, Undistortion]) -> View:
    """``frame``'s view: its image decoded once (kept in ``cache`` as far as it fits), mask and ground truth."""
    w0, h0 = _open(frame.path, image_size)
    if frame.width and (frame.width, frame.height) != (w0, h0):
        if abs(frame.width / frame.height - w0 / h0) > 0.01:
            raise DataError(f"{frame.path}: image is {w0}x{h0} but its camera says {frame.width}x{frame.height}; "
                            "the image does not belong to this camera model")
    size = (max(1, round(w0 / downscale)), max(1, round(h0 / downscale)))
    K = frame.K.copy()
    cam_w, cam_h = (frame.width or w0), (frame.height or h0)
    K[0] *= size[0] / cam_w
    K[1] *= size[1] / cam_h
    K, remap, inside = _undistortion(K, frame.distortion, size, cameras)
    decode = partial(decode_image, frame.path, size, remap, background)
    pixels = decode()
    image = StoredImage(decode, cache, size[0], size[1], has_alpha=pixels.shape[-1] == 4)
    cache.put(image, pixels)
    mask = inside
    if frame.mask_path is not None:
        mask = _tensor(_remap(_read_mask(frame.mask_path, size).astype(np.uint8), remap, cv2.INTER_NEAREST) > 0)
        mask = mask if inside is None else mask & inside
    gt = None
    gt_path = data_dir / "gt_depth" / f"{key}.npy"
    if gt_path.exists():
        g = np.load(gt_path).astype(np.float32)
        if g.shape != (h0, w0):
            raise DataError(f"{gt_path}: shape {g.shape} differs from its image {(h0, w0)}; gt_depth must match")
        g = _remap(_resize(g, size, cv2.INTER_NEAREST), remap, cv2.INTER_NEAREST)
        gt = torch.from_numpy(np.where(np.isfinite(g) & (g > 0), g, 0).astype(np.float32))
    return View(frame.name, key, image, torch.tensor(K, dtype=torch.float32),
                torch.tensor(frame.camtoworld, dtype=torch.float32), mask, gt, point_ids=frame.point_ids, remap=remap)


def attach_prior(view: View, prior: np.ndarray, kind: str, step: float = 0.0,
                 confidence: np.ndarray | None = None, grid: tuple[float, float] | None = None) -> str | None:
    """Resize ``prior [h, w]`` to ``view``'s resolution (and undistort) and attach it, with its quantisation
    ``step`` and its ``confidence [h, w]`` in [0, 1] (resampled like the prior, 0 where the prior is invalid);
    the reason if skipped.

    Validity is decided at the prior's own resolution (finite, and positive for metric ``depth``), holes are
    filled with the nearest valid value before resampling (area average when shrinking, bilinear otherwise),
    and a training pixel is valid only if every source pixel that contributes to it is: the invalid indicator
    goes through the same resampling, so no hole value blends into a valid pixel.

    A prior read from 16-bit levels of ``grid = (vmin, vmax)`` (a depth PNG, 16-bit sensor depth) is kept as
    :class:`Levels` of that range: at its own resolution it keeps exactly its values, resampled it is within half
    a level of them; without ``grid`` it is kept as float32. The confidence is kept as 16-bit levels of [0, 1]."""
    h, w = prior.shape
    if abs(w / h - view.width / view.height) > 0.01:
        return f"prior is {w}x{h}, a different aspect ratio than the image ({view.width}x{view.height})"
    if confidence is not None and confidence.shape != prior.shape:
        return f"its confidence map is {confidence.shape[1]}x{confidence.shape[0]}, the prior {w}x{h}"
    prior = prior.astype(np.float32)
    ok = np.isfinite(prior) & ((prior > 0) if kind == "depth" else True)
    if not ok.any():
        return "the prior has no valid pixel"
    if not ok.all():  # nearest valid value into the holes
        prior = prior[tuple(ndimage.distance_transform_edt(~ok, return_distances=False, return_indices=True))]
    size = (view.width, view.height)
    interp = cv2.INTER_AREA if w > view.width else cv2.INTER_LINEAR
    p = _remap(_resize(prior, size, interp), view.remap, cv2.INTER_LINEAR)
    bad = _remap(_resize((~ok).astype(np.float32), size, interp), view.remap, cv2.INTER_LINEAR)
    valid = bad <= 1e-6
    view.prior_valid = torch.from_numpy(valid)
    view.prior = Levels.encode(p, *grid) if grid else torch.from_numpy(np.where(valid, p, 0).astype(np.float32))
    view.prior_step = float(step)
    if confidence is not None:
        c = _remap(_resize(confidence.astype(np.float32), size, interp), view.remap, cv2.INTER_LINEAR)
        view.prior_confidence = Levels.encode(np.where(valid, np.clip(c, 0, 1), 0), 0.0, 1.0)
    return None


def attach_sensor_depth(views: list[View], frames: list[Frame]) -> int:
    """Attach each frame's sensor depth (``Frame.depth_path``) to its view as a metric ``depth`` prior in metres
    (stored value x ``Frame.depth_unit_scale``; 0, NaN, inf and negative values are holes, which stay holes through
    :func:`attach_prior`), its quantisation step one stored unit when the file holds whole numbers (16-bit ones
    are kept on their own levels). A frame whose file is missing or unreadable gets one warning naming it and no
    prior. Returns how many views got one."""
    attached = 0
    for view, frame in zip(views, frames):
        if frame.depth_path is None:
            continue
        try:
            raw = read_depth_file(frame.depth_path)
        except DepthReadError as e:
            log.warning("sensor depth of %s: %s; this view trains without a depth prior", frame.name, e)
            continue
        finite = raw[np.isfinite(raw)]
        whole = np.array_equal(finite, np.round(finite))
        step = frame.depth_unit_scale if whole else 0.0
        grid = (0.0, MAX16 * step) if whole and finite.max(initial=0) <= MAX16 else None
        why = attach_prior(view, raw * frame.depth_unit_scale, "depth", step, grid=grid)
        if why:
            log.warning("sensor depth of %s (%s): %s; this view trains without a depth prior", frame.name,
                        frame.depth_path, why)
        attached += why is None
    return attached


def split_views(views: list[View], splits: list[str | None], test_every: int, num_train_views: int | None
                ) -> tuple[list[View], list[View]]:
    """Views sorted by name -> (train, test): a split fixed by the layout, else every ``test_every``-th image
    (index 0, 8, 16, ... with the default 8) is a test view; ``num_train_views`` keeps that many evenly spaced."""
    if any(s is not None for s in splits):
        train = [v for v, s in zip(views, splits) if s != "test"]
        test = [v for v, s in zip(views, splits) if s == "test"]
    elif test_every > 0 and len(views) > 1:
        train = [v for i, v in enumerate(views) if i % test_every != 0]
        test = [v for i, v in enumerate(views) if i % test_every == 0]
    else:
        train, test = list(views), []
    if num_train_views:
        if num_train_views > len(train):
            log.warning("num_train_views=%d but only %d training views exist; using all", num_train_views, len(train))
        else:
            keep = np.unique(np.linspace(0, len(train) - 1, num_train_views).round().astype(int))
            train = [train[i] for i in keep]
    if not train:
        raise DataError("no training views left; lower data.test_every or raise data.num_train_views")
    return train, test


def load_scene(data_dir: str | Path, kind: str = "auto", images_dir: str = "images", downscale: int = 1,
               background: Sequence[float] | str | None = None, test_every: int = 8,
               num_train_views: int | None = None, depth_dir: str | Path | None = None,
               image_cache_gb: float | str | None = "auto", device: torch.device | str = "cpu") -> Scene:
    """Read the dataset in ``data_dir`` into a :class:`Scene` at ``1/downscale`` resolution, with the depth
    priors in ``depth_dir`` attached to the views, or without ``depth_dir`` the frames' sensor depth (nerfstudio
    ``depth_file_path``, :func:`attach_sensor_depth`). ``background``: see :func:`resolve_background`. Each image
    is decoded once here; up to ``image_cache_gb`` of them stay decoded on ``device`` (the training device), the
    others are decoded again when used (:func:`~s3dgs.data.image_cache.cache_budget`)."""
    data_dir = Path(data_dir)
    layout = read_layout(data_dir, kind, images_dir)
    bg = resolve_background(background, layout.kind)
    try:
        keys = prior_keys([f.name for f in layout.frames])
    except DepthFileError as e:
        raise DataError(str(e)) from None
    device = torch.device(device)
    cache, cameras = ImageCache(cache_budget(image_cache_gb, device), device), {}
    views = [_load_view(f, k, data_dir, downscale, np.asarray(bg, np.float32), cache, cameras)
             for f, k in zip(layout.frames, keys)]
    prior_kind, normalization, source = None, "per_image", None
    sensor = sum(f.depth_path is not None for f in layout.frames)
    if depth_dir is not None:
        if sensor:
            log.info("depth_dir=%s is given: its priors are used, not the sensor depth (depth_file_path) of %d frames",
                     depth_dir, sensor)
        priors = load_priors(depth_dir, keys)
        prior_kind, normalization, source = priors.kind, priors.normalization, "depth_dir"
        problems = {}
        for v in views:
            levels, confidence = priors.maps.pop(v.key, None), priors.confidence.pop(v.key, None)
            why = priors.problems.get(v.key) or attach_prior(
                v, levels.decode(), priors.kind, levels.step, None if confidence is None else confidence.decode(),
                grid=(levels.vmin, levels.vmax))
            if why:
                problems[v.key] = why
        if problems:
            log.warning("%d of %d views train without the depth term (no usable prior): %s", len(problems),
                        len(views), "; ".join(f"{k}: {v}" for k, v in problems.items()))
    elif sensor and attach_sensor_depth(views, layout.frames):
        prior_kind, source = "depth", "sensor"
        log.info("sensor depth (depth_file_path) attached to %d of %d views as metric depth",
                 sum(v.prior is not None for v in views), len(views))
    train, test = split_views(views, [f.split for f in layout.frames], test_every, num_train_views)
    log.info("%s dataset %s: %d train / %d test views at %dx%d, %d sparse points; %.2f GB of images kept decoded "
             "(data.image_cache_gb)", layout.kind, data_dir, len(train), len(test), train[0].width, train[0].height,
             len(layout.points), cache.nbytes / GIB)
    return Scene(train, test, torch.from_numpy(layout.points.astype(np.float32)),
                 torch.from_numpy(layout.points_rgb.astype(np.float32) / 255.0), layout.kind, prior_kind, bg,
                 normalization, source)
