"""Evaluation of a trained model: image and depth metrics over views, and the side-by-side render PNGs.

Functions of a render callback, so the trainer (at the end of training) and ``python -m s3dgs.eval`` (on a
finished run) measure the same way.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch

from preprocess.atomic_io import atomic_write_bytes
from s3dgs.data.scene import Scene, View
from s3dgs.metrics import depth_metrics, prior_fitted_to, psnr, ssim

log = logging.getLogger(__name__)

RenderFn = Callable[[View], tuple[torch.Tensor, torch.Tensor]]
"""``view -> (rgb [1, H, W, 3], z-depth [1, H, W])``, any device."""

PERCENTILE_SAMPLES = 1 << 20  # depth colouring: percentiles from at most about this many pixels


def view_metrics(rgb: torch.Tensor, view: View, depth: torch.Tensor, masked: bool,
                 prior_kind: str | None = None) -> dict[str, float]:
    """Metrics of one render ``rgb [1, H, W, 3]`` in [0, 1] and z-depth ``[H, W]`` (CPU) against ``view``:
    full-image ``psnr`` (dB) and ``ssim``; with ``masked`` also ``psnr_masked`` / ``ssim_masked`` over
    ``view.mask`` (the whole image when the view has none); ``depth_abs_rel`` / ``depth_delta1`` when the
    view has ground-truth depth, and then ``prior_abs_rel`` when it also has a prior of ``prior_kind``: the
    AbsRel of the prior alone after the best affine fit to the truth (:func:`prior_fitted_to`), the bar a
    depth-supervised render has to beat. Depth metrics are None when the view's ground truth has no known pixel."""
    gt = view.rgba_on(rgb.device)[0][None]
    row = {"psnr": float(psnr(rgb, gt)), "ssim": float(ssim(rgb, gt))}
    if masked:
        mask = None if view.mask is None else view.mask.to(rgb.device)[None]
        row.update(psnr_masked=float(psnr(rgb, gt, mask)), ssim_masked=float(ssim(rgb, gt, mask)))
    if view.gt_depth is not None:
        dm = depth_metrics(depth, view.gt_depth)
        row.update(depth_abs_rel=dm["abs_rel"], depth_delta1=dm["delta1"])
        if view.prior is not None and prior_kind is not None:
            oracle = prior_fitted_to(view.prior, view.prior_valid, prior_kind, view.gt_depth)
            row["prior_abs_rel"] = depth_metrics(oracle, view.gt_depth * view.prior_valid)["abs_rel"]
    return row


@torch.no_grad()
def evaluate_views(render_fn: RenderFn, views: list[View], renders_dir: Path | None = None,
                   prior_kind: str | None = None) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Means over ``views`` of :func:`view_metrics` (the masked metrics when any view has a mask; depth
    metrics when every view has ground truth; ``prior_abs_rel`` when every view also has a prior of
    ``prior_kind``), and ``num_views``; and the metrics of each view by its key. A view's None (a depth metric of
    a ground truth with no known pixel) is left out of that mean, with a warning; a mean of no value is None. With
    ``renders_dir``, also writes ``<renders_dir>/<key>.png`` per view (:func:`save_side_by_side`)."""
    masked = any(v.mask is not None for v in views)
    rows = {}
    for v in views:
        rgb, depth = render_fn(v)
        rgb, depth = rgb.clamp(0, 1), depth[0].cpu()
        rows[v.key] = view_metrics(rgb, v, depth, masked, prior_kind)
        if renders_dir is not None:
            path = renders_dir / f"{v.key}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_side_by_side(path, rgb[0].cpu(), v.image, depth)
    keys = set.intersection(*(set(r) for r in rows.values())) if rows else set()
    return {k: _mean(k, [r[k] for r in rows.values()]) for k in sorted(keys)} | {"num_views": len(rows)}, rows


def _mean(name: str, values: list[float | None]) -> float | None:
    """Mean of the values that are not None (None if none is), warning when some are."""
    known = [v for v in values if v is not None]
    if len(known) < len(values):
        log.warning("%s: %d of %d views have no known ground-truth depth, left out of the mean", name,
                    len(values) - len(known), len(values))
    return float(np.mean(known)) if known else None


def evaluate_scene(render_fn: RenderFn, scene: Scene, renders_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """``{"test": ..., "train": ..., "views": {"test": {key: ...}, "train": ...}}``: each split's means and each
    view's metrics (:func:`evaluate_views`); ``renders_dir`` gets the test views' PNGs. Without test views only
    ``train`` (with a warning)."""
    metrics: dict[str, Any] = {"views": {}}
    if scene.test:
        metrics["test"], metrics["views"]["test"] = evaluate_views(render_fn, scene.test, renders_dir,
                                                                   scene.prior_kind)
    else:
        log.warning("no test views (data.test_every=0 or too few images): metrics are on training views")
    metrics["train"], metrics["views"]["train"] = evaluate_views(render_fn, scene.train, prior_kind=scene.prior_kind)
    return {k: metrics[k] for k in ("test", "train", "views") if k in metrics}


def percentiles(x: torch.Tensor, q: tuple[float, ...]) -> list[float]:
    """Percentiles ``q`` (0-100) of ``x`` from an evenly strided sample of at most about
    ``PERCENTILE_SAMPLES`` values: any size works (``torch.quantile`` stops at 16M elements) and costs the same."""
    flat = x.detach().reshape(-1).cpu().numpy()
    return [float(v) for v in np.percentile(flat[:: max(1, flat.size // PERCENTILE_SAMPLES)], q)]


def disparity_range(depth: torch.Tensor) -> tuple[float, float]:
    """2nd and 98th percentiles of the inverse of z-depth ``depth`` (the colour range of :func:`depth_colors`)."""
    lo, hi = percentiles(1.0 / depth.clamp_min(1e-6), (2, 98))
    return lo, hi


def depth_colors(depth: torch.Tensor, bounds: tuple[float, float]) -> np.ndarray:
    """Inverse of z-depth ``depth [H, W]`` (CPU) colour-mapped (turbo) between ``bounds`` (inverse depths):
    ``[H, W, 3]`` uint8 RGB."""
    lo, hi = bounds
    disp = 1.0 / depth.clamp_min(1e-6)
    d8 = ((disp - lo) / max(hi - lo, 1e-12)).clamp(0, 1).mul(255).byte().numpy()
    return cv2.cvtColor(cv2.applyColorMap(d8, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``[H, W, 3]`` in [0, 1] (CPU) -> uint8."""
    return (image.clamp(0, 1).numpy() * 255).round().astype(np.uint8)


def save_side_by_side(path: Path, rgb: torch.Tensor, gt: torch.Tensor, depth: torch.Tensor) -> None:
    """PNG of render | ground truth | inverse depth colour-mapped between its 2nd and 98th percentiles
    (``[H, W, 3]`` in [0, 1], ``[H, W, 3]`` in [0, 1], z-depth ``[H, W]``; CPU tensors)."""
    row = np.hstack([to_uint8(rgb), to_uint8(gt), depth_colors(depth, disparity_range(depth))])
    ok, buf = cv2.imencode(".png", cv2.cvtColor(row, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    atomic_write_bytes(path, buf.tobytes())
