"""Image and depth quality metrics: pure functions on tensors, and their means over a scene's views for a render
callback, so the trainer (at the end of training), TensorBoard and ``python -m s3dgs.eval`` (on a finished run)
measure the same way."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from s3dgs.data.scene import Scene, View
from s3dgs.images import save_side_by_side

log = logging.getLogger(__name__)

RenderFn = Callable[[View], tuple[torch.Tensor, torch.Tensor]]
"""``view -> (rgb [1, H, W, 3], z-depth [1, H, W])``, any device."""


def _gaussian_taps(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-x**2 / (2 * sigma**2))
    return g / g.sum()


def _blur(t: torch.Tensor) -> torch.Tensor:
    """Separable 11x11 Gaussian blur (sigma 1.5) of every channel of ``t [B, K, H, W]``, zero padding."""
    g = _gaussian_taps().to(t)
    k = t.shape[1]
    t = F.conv2d(t, g.view(1, 1, 1, -1).expand(k, 1, 1, -1), padding=(0, len(g) // 2), groups=k)
    return F.conv2d(t, g.view(1, 1, -1, 1).expand(k, 1, -1, 1), padding=(len(g) // 2, 0), groups=k)


def ssim_map(img: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM (11x11 Gaussian window, sigma 1.5, as in 3DGS) of ``img``/``ref`` ``[C, H, W, 3]``
    in [0, 1]; returns ``[C, H, W]`` (mean over colour channels), zero-padded at the borders."""
    x, y = img.permute(0, 3, 1, 2), ref.permute(0, 3, 1, 2)
    mu_x, mu_y, xx, yy, xy = _blur(torch.cat([x, y, x * x, y * y, x * y], 1)).chunk(5, dim=1)
    sxx, syy, sxy = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.mean(1)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x.mean() if mask is None else x[mask.expand_as(x)].mean()


def ssim(img: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean SSIM of ``[C, H, W, 3]`` images, over ``mask [C, H, W]`` pixels if given."""
    return _masked_mean(ssim_map(img, ref), mask)


def psnr(img: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """PSNR in dB of images in [0, 1] (``[..., 3]``), over ``mask [...]`` pixels if given."""
    mse = _masked_mean((img - ref) ** 2, None if mask is None else mask[..., None])
    return -10 * torch.log10(mse.clamp_min(1e-10))


def depth_metrics(depth: torch.Tensor, gt: torch.Tensor) -> dict[str, float | None]:
    """AbsRel and delta1 of rendered z-depth ``[H, W]`` against ground truth ``[H, W]`` (0 = unknown), after
    one least-squares scale ``s = argmin sum (s*depth - gt)^2`` over known pixels (removes the scene's
    arbitrary scale). Pixels the render leaves empty count with their (zero) depth. Both are None when ``gt``
    has no known pixel (nothing to measure)."""
    valid = gt > 0
    if not valid.any():
        return {"abs_rel": None, "delta1": None}
    d, g = depth[valid].double(), gt[valid].double()
    s = (d * g).sum() / (d * d).sum().clamp_min(1e-12)
    d = s * d
    ratio = torch.maximum(d / g, g / d.clamp_min(1e-12))
    return {"abs_rel": float(((d - g).abs() / g).mean()), "delta1": float((ratio < 1.25).double().mean())}


def prior_fitted_to(prior: torch.Tensor, valid: torch.Tensor, kind: str, depth: torch.Tensor) -> torch.Tensor:
    """A prior ``[H, W]`` as z-depth ``[H, W]`` after the affine that matches z-depth ``depth [H, W]`` (0 =
    unknown) best, in least squares in the prior's space (``1/z`` for ``inverse_depth`` priors, ``z`` for
    metric ``depth`` ones), over pixels known in both; 0 where the prior is invalid or maps to z <= 0. Fitted
    to the truth: the best a depth loss that aligns the prior per image could teach; fitted to a render: the
    prior shown beside it. All 0 when no pixel is known in both (nothing to fit to)."""
    known = valid & (depth > 0)
    if not known.any():
        return torch.zeros_like(prior)
    p = prior[known].double()
    target = 1.0 / depth[known].double() if kind == "inverse_depth" else depth[known].double()
    a, b = torch.linalg.lstsq(torch.stack([p, torch.ones_like(p)], 1), target[:, None]).solution[:, 0]
    mapped = a * prior.double() + b
    z = 1.0 / mapped.clamp_min(1e-12) if kind == "inverse_depth" else mapped
    return torch.where(valid & (mapped > 0), z, torch.zeros_like(z)).to(prior.dtype)


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
