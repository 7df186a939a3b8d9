"""Align depth priors to the sparse (SfM) points, for the ``sparse`` and ``l1`` depth losses.

``sparse`` follows the reference 3DGS implementation (utils/make_depth_scale.py): per image, the prior's
values at the points seen in that image are matched to the points' inverse depth by median and mean
absolute deviation; images with too few points, or a scale outside [0.2, 5] x the median scale, are
left out. ``l1`` uses one scene-to-metric factor for the whole scene.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from s3dgs.data.scene import View

log = logging.getLogger(__name__)

MIN_POINTS = 10


def project(view: View, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Points ``[M, 3]`` (world) -> pixel coordinates ``[m, 2]`` and z-depths ``[m]`` of those in front of
    ``view`` and inside its image."""
    w2c = torch.linalg.inv(view.camtoworld)
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2]
    uv = (cam @ view.K.T)[:, :2] / z.clamp_min(1e-9)[:, None]
    keep = (z > 1e-9) & (uv[:, 0] >= 0) & (uv[:, 0] < view.width) & (uv[:, 1] >= 0) & (uv[:, 1] < view.height)
    return uv[keep], z[keep]


def sample(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``image [H, W]`` at pixel coordinates ``uv [m, 2]`` (pixel centres at +0.5)."""
    h, w = image.shape
    grid = torch.stack([uv[:, 0] / w * 2 - 1, uv[:, 1] / h * 2 - 1], -1)
    return F.grid_sample(image[None, None], grid[None, None], align_corners=False, padding_mode="border")[0, 0, 0]


def _seen_points(view: View, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prior values, z-depths and pixel coordinates of the sparse points seen in ``view`` (all points in its
    frustum when the dataset has no visibility tracks), on valid prior pixels."""
    pts = points[torch.as_tensor(view.point_ids)] if len(view.point_ids) else points
    uv, z = project(view, pts)
    valid = sample(view.prior_valid.float(), uv) > 0.999
    return sample(view.prior, uv[valid]), z[valid], uv[valid]


def median_mad_fit(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float] | None:
    """``scale, offset`` with ``y ~ scale*x + offset`` by matching medians and mean absolute deviations
    (1-D values); ``None`` with ``MIN_POINTS`` or fewer values or a flat ``y``."""
    if len(x) <= MIN_POINTS or float(y.max() - y.min()) <= 1e-3 * float(y.abs().max()):
        return None
    tx, ty = x.median(), y.median()
    sx, sy = (x - tx).abs().mean(), (y - ty).abs().mean()
    if sx <= 0:
        return None
    scale = float(sy / sx)
    return scale, float(ty - tx * scale)


def sparse_alignments(views: list[View], points: torch.Tensor) -> dict[str, tuple[float, float]]:
    """Per-view ``(scale, offset)`` mapping an inverse-depth prior onto the sparse points' inverse depth,
    for views whose fit is reliable (enough points, scale within [0.2, 5] x the median scale)."""
    fits = {}
    for v in views:
        if v.prior is None or len(points) == 0:
            continue
        pv, z, _ = _seen_points(v, points)
        fit = median_mad_fit(pv, 1.0 / z)
        if fit is not None and fit[0] > 0:
            fits[v.stem] = fit
    if fits:
        med = torch.tensor([s for s, _ in fits.values()]).median().item()
        fits = {k: f for k, f in fits.items() if 0.2 * med <= f[0] <= 5 * med}
    dropped = sum(v.prior is not None for v in views) - len(fits)
    if dropped:
        log.warning("depth_loss=sparse: %d views have too few sparse points or an outlying scale and train "
                    "without the depth term", dropped)
    return fits


def metric_scale(views: list[View], points: torch.Tensor) -> float:
    """One factor ``k`` (metres per scene unit) with ``k * z_scene ~ metric prior``: the median ratio over
    the sparse points seen in all views; 1.0 (scene assumed metric) without points."""
    ratios = []
    for v in views:
        if v.prior is not None and len(points):
            pv, z, _ = _seen_points(v, points)
            ratios.append(pv / z)
    ratios = torch.cat(ratios) if ratios else torch.zeros(0)
    if len(ratios) <= MIN_POINTS:
        log.warning("depth_loss=l1: no sparse points to relate scene units to the prior's metres; assuming the "
                    "scene is metric (scale 1)")
        return 1.0
    return float(ratios.median())
