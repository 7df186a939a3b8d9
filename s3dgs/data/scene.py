"""Load a dataset into memory at training resolution: images, cameras, masks, ground truth, priors.

``load_scene`` reads any supported layout (see :mod:`s3dgs.data.frames`), downscales, undistorts
with OpenCV, splits train/test (every ``test_every``-th image is a test view unless the layout fixes
the split), and attaches the user's masks, the depth prior and ``gt_depth/<key>.npy`` of each view
when present. The depth prior comes from ``depth_dir`` when given, else from the frames' sensor depth
(nerfstudio ``depth_file_path``: metric depth, :func:`attach_sensor_depth`). Transparent images are composited on the scene's background and keep their alpha.
A view's key names its files (priors, ground truth, renders, per-view metrics): the image's stem, or its
relative path when stems repeat (``preprocess.depth_png.prior_keys``, docs/formats.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy import ndimage

from preprocess.depth_files import DepthReadError, read_depth_file
from preprocess.depth_png import DepthFileError, prior_keys
from preprocess.images import ImageReadError, open_image, to_rgb8
from s3dgs.data.frames import IMAGE_EXTS, DataError, Distortion, Frame, read_layout
from s3dgs.data.priors import load_priors

log = logging.getLogger(__name__)


@dataclass
class View:
    """One posed image at training resolution (tensors on CPU).

    ``image`` is composited on the scene's background ``bg``; with ``alpha`` (images with an alpha channel)
    the premultiplied colour is ``straight * alpha = image - bg * (1 - alpha)``, so the image on another
    background ``bg2`` is ``image + (bg2 - bg) * (1 - alpha)``."""

    name: str  # the image's path relative to the layout's image root (unique)
    key: str  # what its files are named after: the stem, or the relative path when stems repeat (prior_keys)
    image: torch.Tensor  # [H, W, 3] float32 in [0, 1]
    K: torch.Tensor  # [3, 3] float32
    camtoworld: torch.Tensor  # [4, 4] float32, OpenCV axes
    mask: torch.Tensor | None = None  # [H, W] bool, pixels that count (user masks, undistortion border)
    gt_depth: torch.Tensor | None = None  # [H, W] float32 z-depth, 0 = unknown
    prior: torch.Tensor | None = None  # [H, W] float32 in the prior's units
    prior_valid: torch.Tensor | None = None  # [H, W] bool
    point_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # sparse points seen
    remap: tuple[np.ndarray, np.ndarray] | None = None  # undistortion maps at training resolution
    alpha: torch.Tensor | None = None  # [H, W] float32 in [0, 1], the image's alpha channel; None = opaque
    prior_step: float = 0.0  # the prior's quantisation step (one 16-bit level) in its units; 0 = unknown
    prior_confidence: torch.Tensor | None = None  # [H, W] float32 in [0, 1], the prior's per-pixel confidence

    @property
    def height(self) -> int:
        return self.image.shape[0]

    @property
    def width(self) -> int:
        return self.image.shape[1]


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


def _read_rgb(path: Path, background: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Image file -> float32 ``[H, W, 3]`` in [0, 1] (alpha composited on ``background``) and its alpha
    ``[H, W]`` float32 in [0, 1] (None without an alpha channel).

    Decoding and mode handling are preprocess's (the same pixels the depth priors saw): stored pixel order, the
    EXIF Orientation tag ignored, as the poses of every supported layout refer to it (docs/formats.md)."""
    if path.suffix.lower() not in IMAGE_EXTS:
        raise DataError(f"{path}: {path.suffix} is not a supported training image type "
                        f"({', '.join(sorted(IMAGE_EXTS))}); convert it to PNG")
    try:
        im = open_image(path)
    except ImageReadError as e:
        raise DataError(str(e)) from None
    try:
        has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
        if not has_alpha:
            return to_rgb8(im).astype(np.float32) / 255.0, None
        arr = np.asarray(im.convert("RGBA"), np.float32) / 255.0
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable image ({e}); remove it or re-export it") from None
    alpha = arr[..., 3:]
    return arr[..., :3] * alpha + background * (1 - alpha), alpha[..., 0]


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


def _load_view(frame: Frame, key: str, data_dir: Path, downscale: int, background: np.ndarray) -> View:
    rgb, alpha = _read_rgb(frame.path, background)
    h0, w0 = rgb.shape[:2]
    if frame.width and (frame.width, frame.height) != (w0, h0):
        if abs(frame.width / frame.height - w0 / h0) > 0.01:
            raise DataError(f"{frame.path}: image is {w0}x{h0} but its camera says {frame.width}x{frame.height}; "
                            "the image does not belong to this camera model")
    size = (max(1, round(w0 / downscale)), max(1, round(h0 / downscale)))
    K = frame.K.copy()
    cam_w, cam_h = (frame.width or w0), (frame.height or h0)
    K[0] *= size[0] / cam_w
    K[1] *= size[1] / cam_h
    remap = None
    if frame.distortion is not None:
        K, remap = _undistort(K, frame.distortion, size)
    rgb = _remap(_resize(rgb, size, cv2.INTER_AREA), remap, cv2.INTER_LINEAR)
    if alpha is not None:
        alpha = _remap(_resize(alpha, size, cv2.INTER_AREA), remap, cv2.INTER_LINEAR)
    mask = None
    if frame.mask_path is not None:
        mask = _remap(_read_mask(frame.mask_path, size).astype(np.uint8), remap, cv2.INTER_NEAREST) > 0
    if remap is not None:
        inside = _inside(remap, size)
        mask = inside if mask is None else mask & inside
    gt = None
    gt_path = data_dir / "gt_depth" / f"{key}.npy"
    if gt_path.exists():
        g = np.load(gt_path).astype(np.float32)
        if g.shape != (h0, w0):
            raise DataError(f"{gt_path}: shape {g.shape} differs from its image {(h0, w0)}; gt_depth must match")
        g = _remap(_resize(g, size, cv2.INTER_NEAREST), remap, cv2.INTER_NEAREST)
        gt = torch.from_numpy(np.where(np.isfinite(g) & (g > 0), g, 0).astype(np.float32))
    return View(frame.name, key, _tensor(rgb.astype(np.float32)), torch.tensor(K, dtype=torch.float32),
                torch.tensor(frame.camtoworld, dtype=torch.float32), _tensor(mask), gt, None, None,
                frame.point_ids, remap, _tensor(alpha))


def attach_prior(view: View, prior: np.ndarray, kind: str, step: float = 0.0,
                 confidence: np.ndarray | None = None) -> str | None:
    """Resize ``prior [h, w]`` to ``view``'s resolution (and undistort) and attach it, with its quantisation
    ``step`` and its ``confidence [h, w]`` in [0, 1] (resampled like the prior, 0 where the prior is invalid);
    the reason if skipped.

    Validity is decided at the prior's own resolution (finite, and positive for metric ``depth``), holes are
    filled with the nearest valid value before resampling (area average when shrinking, bilinear otherwise),
    and a training pixel is valid only if every source pixel that contributes to it is: the invalid indicator
    goes through the same resampling, so no hole value blends into a valid pixel."""
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
    view.prior = torch.from_numpy(np.where(valid, p, 0).astype(np.float32))
    view.prior_valid = torch.from_numpy(valid)
    view.prior_step = float(step)
    if confidence is not None:
        c = _remap(_resize(confidence.astype(np.float32), size, interp), view.remap, cv2.INTER_LINEAR)
        view.prior_confidence = torch.from_numpy(np.where(valid, np.clip(c, 0, 1), 0).astype(np.float32))
    return None


def attach_sensor_depth(views: list[View], frames: list[Frame]) -> int:
    """Attach each frame's sensor depth (``Frame.depth_path``) to its view as a metric ``depth`` prior in metres
    (stored value x ``Frame.depth_unit_scale``; 0, NaN, inf and negative values are holes, which stay holes through
    :func:`attach_prior`), its quantisation step one stored unit when the file holds whole numbers. A frame whose
    file is missing or unreadable gets one warning naming it and no prior. Returns how many views got one."""
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
        step = frame.depth_unit_scale if np.array_equal(finite, np.round(finite)) else 0.0
        why = attach_prior(view, raw * frame.depth_unit_scale, "depth", step)
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
               num_train_views: int | None = None, depth_dir: str | Path | None = None) -> Scene:
    """Read the dataset in ``data_dir`` into a :class:`Scene` at ``1/downscale`` resolution, with the depth
    priors in ``depth_dir`` attached to the views, or without ``depth_dir`` the frames' sensor depth (nerfstudio
    ``depth_file_path``, :func:`attach_sensor_depth`). ``background``: see :func:`resolve_background`."""
    data_dir = Path(data_dir)
    layout = read_layout(data_dir, kind, images_dir)
    bg = resolve_background(background, layout.kind)
    try:
        keys = prior_keys([f.name for f in layout.frames])
    except DepthFileError as e:
        raise DataError(str(e)) from None
    views = [_load_view(f, k, data_dir, downscale, np.asarray(bg, np.float32)) for f, k in zip(layout.frames, keys)]
    prior_kind, normalization, source = None, "per_image", None
    sensor = sum(f.depth_path is not None for f in layout.frames)
    if depth_dir is not None:
        if sensor:
            log.info("depth_dir=%s is given: its priors are used, not the sensor depth (depth_file_path) of %d frames",
                     depth_dir, sensor)
        priors = load_priors(depth_dir, keys)
        prior_kind, normalization, source = priors.kind, priors.normalization, "depth_dir"
        problems = {v.key: priors.problems.get(v.key)
                    or attach_prior(v, priors.maps[v.key], priors.kind, priors.steps[v.key],
                                    priors.confidence.get(v.key)) for v in views}
        problems = {key: why for key, why in problems.items() if why}
        if problems:
            log.warning("%d of %d views train without the depth term (no usable prior): %s", len(problems),
                        len(views), "; ".join(f"{k}: {v}" for k, v in problems.items()))
    elif sensor and attach_sensor_depth(views, layout.frames):
        prior_kind, source = "depth", "sensor"
        log.info("sensor depth (depth_file_path) attached to %d of %d views as metric depth",
                 sum(v.prior is not None for v in views), len(views))
    train, test = split_views(views, [f.split for f in layout.frames], test_every, num_train_views)
    log.info("%s dataset %s: %d train / %d test views at %dx%d, %d sparse points", layout.kind, data_dir,
             len(train), len(test), train[0].width, train[0].height, len(layout.points))
    return Scene(train, test, torch.from_numpy(layout.points.astype(np.float32)),
                 torch.from_numpy(layout.points_rgb.astype(np.float32) / 255.0), layout.kind, prior_kind, bg,
                 normalization, source)
