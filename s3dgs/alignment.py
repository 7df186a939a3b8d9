"""Align depth priors to the sparse (SfM) points, for the ``anchored``, ``sparse`` and ``l1`` depth losses.

``anchored`` fits, per image and once, a scale and shift of the prior onto the points in the prior's space
(inverse depth for relative inverse-depth priors, depth for metric ones) robustly: RANSAC over 2-point
samples, then least squares on the inliers; a view with too few points or inliers, or a non-positive
scale, has no fit (:mod:`s3dgs.reliability` decides what that view's prior is worth). With priors that share one scale and shift over
the sequence (a video depth model), :func:`sequence_alignment` makes one such fit to all views' points pooled.
``sparse`` follows the reference 3DGS implementation (utils/make_depth_scale.py): per image, the prior's
values at the points seen in that image are matched to the points' inverse depth by median and mean
absolute deviation; images with too few points, or a scale outside [0.2, 5] x the median scale, are
left out. ``l1`` uses one scene-to-metric factor for the whole scene (:func:`metric_scale`), and so does
``anchored`` for sensor depth (metric already: no per-view fit).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from s3dgs.data.scene import View
from s3dgs.losses import fit_affine

log = logging.getLogger(__name__)

MIN_POINTS = 10


def pixel_coords(view: View, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Points ``[M, 3]`` (world) -> pixel coordinates ``[M, 2]`` (centres at +0.5), z-depths ``[M]`` and ``[M]``
    bool: in front of ``view`` and inside its image."""
    w2c = torch.linalg.inv(view.camtoworld)
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2]
    uv = (cam @ view.K.T)[:, :2] / z.clamp_min(1e-9)[:, None]
    seen = (z > 1e-9) & (uv[:, 0] >= 0) & (uv[:, 0] < view.width) & (uv[:, 1] >= 0) & (uv[:, 1] < view.height)
    return uv, z, seen


def project(view: View, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Points ``[M, 3]`` (world) -> pixel coordinates ``[m, 2]`` and z-depths ``[m]`` of those in front of
    ``view`` and inside its image."""
    uv, z, seen = pixel_coords(view, points)
    return uv[seen], z[seen]


def sample(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``image [H, W]`` at pixel coordinates ``uv [m, 2]`` (pixel centres at +0.5)."""
    h, w = image.shape
    grid = torch.stack([uv[:, 0] / w * 2 - 1, uv[:, 1] / h * 2 - 1], -1)
    return F.grid_sample(image[None, None], grid[None, None], align_corners=False, padding_mode="border")[0, 0, 0]


def seen_points(view: View, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prior values, z-depths and pixel coordinates of the sparse points seen in ``view`` (all points in its
    frustum when the dataset has no visibility tracks), on valid prior pixels."""
    pts = points[torch.as_tensor(view.point_ids)] if len(view.point_ids) else points
    uv, z = project(view, pts)
    valid = sample(view.prior_valid.float(), uv) > 0.999
    return sample(view.prior, uv[valid]), z[valid], uv[valid]


def supported_depths(view: View, points: torch.Tensor, margin: float = 0.5) -> tuple[float, float] | None:
    """The z-depth range ``(near, far)`` where ``view``'s alignment interpolates between the sparse points it sees
    rather than extrapolating from them: their 2nd to 98th percentile depth, widened by ``margin`` (relative) on
    each side; None when it sees fewer than ``MIN_POINTS``."""
    z = seen_points(view, points)[1]
    if len(z) < MIN_POINTS:
        return None
    near, far = torch.quantile(z.double(), torch.tensor([0.02, 0.98], dtype=torch.float64)).tolist()
    return near * (1 - margin), far * (1 + margin)


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
        pv, z, _ = seen_points(v, points)
        fit = median_mad_fit(pv, 1.0 / z)
        if fit is not None and fit[0] > 0:
            fits[v.key] = fit
    if fits:
        med = torch.tensor([s for s, _ in fits.values()]).median().item()
        fits = {k: f for k, f in fits.items() if 0.2 * med <= f[0] <= 5 * med}
    dropped = sum(v.prior is not None for v in views) - len(fits)
    if dropped:
        log.warning("depth_loss=sparse: %d views have too few sparse points or an outlying scale and train "
                    "without the depth term", dropped)
    return fits


def metric_scale(views: list[View], points: torch.Tensor) -> float:
    """One factor ``k`` (metres per scene unit) with ``k * z_scene ~ metric prior``, robustly over the sparse points
    seen in all views, pooled: the median log ratio, taken again over the inliers (within 3 robust standard
    deviations of it), so points off the prior's surface (occluded, false matches, sensor outliers) do not bias it;
    1.0 (scene assumed metric) without points."""
    ratios = []
    for v in views:
        if v.prior is not None and len(points):
            pv, z, _ = seen_points(v, points)
            ratios.append(pv / z)
    ratios = torch.cat(ratios) if ratios else torch.zeros(0)
    if len(ratios) <= MIN_POINTS:
        log.warning("metric depth prior: no sparse points to relate scene units to the prior's metres; assuming the "
                    "scene is metric (scale 1)")
        return 1.0
    log_r = ratios.double().log()
    med = log_r.median()
    sigma = 1.4826 * (log_r - med).abs().median()
    return float(log_r[(log_r - med).abs() <= 3 * sigma].median().exp())


def ransac_affine(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, threshold: float = 0.5,
                  iters: int = 256) -> tuple[float, float, torch.Tensor] | None:
    """Robust ``y ~ a*x + b`` over 1-D values ``x, y [m]``: of ``iters`` 2-point samples drawn with ``gen``, the
    line with ``a > 0`` and the lowest truncated squared residual (MSAC), then least squares on its inliers
    (residual below ``threshold`` x the median absolute deviation of ``y``), refined twice. Returns ``a, b``
    and the inlier mask ``[m]`` bool; ``None`` when ``y`` is constant or no sample gives ``a > 0``."""
    x, y = x.detach().double(), y.detach().double()
    m = len(x)
    tol = float(threshold * (y - y.median()).abs().median())
    if m < 2 or tol <= 0:
        return None
    i = torch.randint(m, (iters,), generator=gen)
    j = (i + torch.randint(1, m, (iters,), generator=gen)) % m
    dx = x[j] - x[i]
    a = (y[j] - y[i]) / torch.where(dx == 0, torch.ones_like(dx), dx)
    ok = (dx != 0) & (a > 0)
    if not ok.any():
        return None
    a, b = a[ok], (y[i] - a * x[i])[ok]
    cost = ((a[:, None] * x + b[:, None] - y) ** 2).clamp_max(tol**2).sum(1)
    best = int(cost.argmin())
    a, b = a[best], b[best]
    for _ in range(3):
        inliers = (a * x + b - y).abs() < tol
        if int(inliers.sum()) < 2:
            break
        a, b = (t.double() for t in fit_affine(x[inliers], y[inliers], positive=False))
    inliers = (a * x + b - y).abs() < tol
    return float(a), float(b), inliers


def anchored_fit(prior_values: torch.Tensor, target: torch.Tensor, gen: torch.Generator, threshold: float = 0.5,
                 min_inlier_ratio: float = 0.5) -> tuple[float, float, torch.Tensor] | str:
    """``(scale, offset, inliers)`` with ``target ~ scale * prior + offset`` by :func:`ransac_affine` over the sparse
    points seen in one view (``[m]`` each; ``inliers [m]`` bool), or why the fit is unreliable: fewer than
    ``MIN_POINTS`` points or inliers, inliers under ``min_inlier_ratio`` of the points, a non-positive scale."""
    m = len(prior_values)
    if m < MIN_POINTS:
        return f"fewer than {MIN_POINTS} sparse points seen"
    fit = ransac_affine(prior_values, target, gen, threshold)
    if fit is None:
        return "no line with a positive scale through the points"
    scale, offset, inliers = fit
    n = int(inliers.sum())
    if n < MIN_POINTS:
        return f"{n} inliers, fewer than {MIN_POINTS}"
    if n < min_inlier_ratio * m:
        return f"inliers under {min_inlier_ratio:.0%} of the points"
    if not scale > 0:
        return "a non-positive scale"
    return scale, offset, inliers


def hat_basis(x: torch.Tensor, length: float, nodes: int) -> torch.Tensor:
    """Linear interpolation weights ``[m, nodes]`` of coordinates ``x [m]`` in ``[0, length]`` on ``nodes``
    evenly spaced nodes from 0 to ``length`` (each row sums to 1)."""
    t = (x.double() / length * (nodes - 1)).clamp(0, nodes - 1)
    return (1 - (t[:, None] - torch.arange(nodes, dtype=torch.float64)).abs()).clamp_min(0)


@dataclass(frozen=True, eq=False)
class ScaleField:
    """A view's alignment ``target = s(u, v) * (prior - root)``: a scale ``s`` bilinear between ``nodes [n, n]``
    values spread evenly over the image (corners included), applied about ``root``, the prior's value at zero
    (inverse) depth. Kept this small (n*n + 1 numbers); :meth:`maps` gives the per-pixel maps when needed."""

    nodes: torch.Tensor  # [n, n] float64, rows top to bottom
    root: float

    def maps(self, height: int, width: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Scale and offset maps ``[height, width]`` float32 on ``device`` with ``target = scale * prior + offset``
        (made there from the nodes: no per-pixel copy between devices)."""
        n = len(self.nodes)
        cu = hat_basis(torch.arange(width) + 0.5, width, n).to(device)
        cv = hat_basis(torch.arange(height) + 0.5, height, n).to(device)
        scale = (cv @ self.nodes.to(device) @ cu.T).float()
        return scale, -scale * self.root


def scale_field_fit(prior_values: torch.Tensor, target: torch.Tensor, uv: torch.Tensor, width: int, height: int,
                    inliers: torch.Tensor, nodes: int, root: float, smooth: float = 0.001, iters: int = 5
                    ) -> ScaleField:
    """The :class:`ScaleField` ``target ~ s(u, v) * (prior - root)`` over the sparse points seen in one view
    (``prior_values, target [m]`` at pixel coordinates ``uv [m, 2]`` of a ``width x height`` image), for priors
    whose error is a low-frequency warp of the (inverse) depth and a mild non-linearity that no single scale
    removes (monocular models): ``root`` is the prior value of zero (inverse) depth, from the view's robust
    line ``a*prior + b`` (``root = -b/a``), so the warp multiplies the depth, not the prior's arbitrary shift.
    Fitted by iteratively reweighted least squares (Geman-McClure weights, starting from the RANSAC
    ``inliers [m]``) with a penalty ``smooth`` on the differences between neighbouring nodes (relative to the
    data term: 0 = free nodes, large = one scale)."""
    x, y = prior_values.double() - root, target.double()
    bu, bv = hat_basis(uv[:, 0], width, nodes), hat_basis(uv[:, 1], height, nodes)
    design = (bv[:, :, None] * bu[:, None, :]).reshape(len(x), nodes * nodes) * x[:, None]
    idx = torch.arange(nodes * nodes).reshape(nodes, nodes)
    pairs = torch.cat([torch.stack([idx[:, :-1].flatten(), idx[:, 1:].flatten()], 1),
                       torch.stack([idx[:-1].flatten(), idx[1:].flatten()], 1)])
    diff = torch.zeros(len(pairs), design.shape[1], dtype=torch.float64)
    diff[torch.arange(len(pairs)), pairs[:, 0]], diff[torch.arange(len(pairs)), pairs[:, 1]] = 1.0, -1.0
    penalty = diff.T @ diff * float((x[inliers] ** 2).mean()) / len(pairs)
    weights = inliers.double()
    for _ in range(iters):
        normal = (design * weights[:, None]).T @ design + smooth * float(weights.sum()) * penalty
        coef = torch.linalg.solve(normal + 1e-12 * torch.eye(len(normal), dtype=torch.float64),
                                  (design * weights[:, None]).T @ y)
        res = design @ coef - y
        sigma = 1.4826 * float(res[weights > 0.5].abs().median()) + 1e-12
        weights = (1 + (res / (2 * sigma)) ** 2) ** -2 * (res.abs() < 6 * sigma)
    return ScaleField(coef.reshape(nodes, nodes), float(root))


def field_nodes(inliers: int, max_nodes: int, points_per_node: int) -> int:
    """Nodes per side of a view's scale field: the most, up to ``max_nodes``, that leave ``points_per_node``
    inlier points per node; below 2 the view keeps one scale."""
    n = max_nodes
    while n >= 2 and n * n * points_per_node > inliers:
        n -= 1
    return n


Alignment = tuple[float, float] | ScaleField  # (scale, offset) or a field: prior -> the points' (inverse) depth


def alignment_maps(fit: Alignment, height: int, width: int, device: torch.device | str = "cpu"
                   ) -> tuple[float | torch.Tensor, float | torch.Tensor]:
    """``(scale, offset)`` of ``fit`` for an image ``height x width``: two numbers, or ``[H, W]`` maps on
    ``device`` for a field."""
    return fit.maps(height, width, device) if isinstance(fit, ScaleField) else fit


def field_or_line(view: View, prior_values: torch.Tensor, target: torch.Tensor, uv: torch.Tensor,
                  line: tuple[float, float, torch.Tensor], max_nodes: int, points_per_node: int, smooth: float
                  ) -> Alignment:
    """``view``'s alignment from its sparse points (``prior_values, target [m]`` at ``uv [m, 2]``) and a robust
    ``line = (scale, offset, inliers [m])``: the line's ``(scale, offset)``, or, where the inliers allow
    :func:`field_nodes` >= 2, the :func:`scale_field_fit` started from them (kept only within 0.25-4x the line's
    scale everywhere, i.e. at every node: a scale near zero would make every residual huge)."""
    scale, offset, inliers = line
    nodes = field_nodes(int(inliers.sum()), max_nodes, points_per_node)
    if nodes < 2:
        return scale, offset
    field = scale_field_fit(prior_values, target, uv, view.width, view.height, inliers, nodes, -offset / scale,
                            smooth)
    if 0.25 * scale <= float(field.nodes.min()) and float(field.nodes.max()) <= 4 * scale:
        return field
    return scale, offset


def anchored_alignments(views: list[View], points: torch.Tensor, kind: str, seed: int = 0, threshold: float = 0.5,
                        min_inlier_ratio: float = 0.5, max_nodes: int = 1, points_per_node: int = 15,
                        smooth: float = 0.001) -> tuple[dict[str, Alignment], dict[str, str]]:
    """Per-view ``(scale, offset)`` mapping the prior onto the sparse points in the prior's space (``1/z`` for
    ``inverse_depth`` priors, ``z`` for metric ``depth`` ones), by :func:`anchored_fit` with one generator seeded
    with ``seed`` (deterministic), refined by :func:`field_or_line` (``max_nodes`` 1: never); and, for the views
    with a prior but no reliable fit, why (:mod:`s3dgs.reliability` turns both into each view's verdict)."""
    gen = torch.Generator().manual_seed(seed)
    fits: dict[str, Alignment] = {}
    failed: dict[str, str] = {}
    for v in views:
        if v.prior is None:
            continue
        if len(points) == 0:
            failed[v.key] = "the dataset has no sparse points"
            continue
        pv, z, uv = seen_points(v, points)
        target = 1.0 / z if kind == "inverse_depth" else z
        fit = anchored_fit(pv, target, gen, threshold, min_inlier_ratio)
        if isinstance(fit, str):
            failed[v.key] = fit
            continue
        fits[v.key] = field_or_line(v, pv, target, uv, fit, max_nodes, points_per_node, smooth)
    return fits, failed


MAX_POOLED = 20000  # pooled point samples a sequence fit uses (RANSAC scores every sample per hypothesis)


def sequence_alignment(views: list[View], points: torch.Tensor, kind: str, seed: int = 0, threshold: float = 0.5,
                       min_inlier_ratio: float = 0.5) -> tuple[float, float] | str:
    """One ``(scale, offset)`` mapping every view's prior onto the sparse points (prior's space, as
    :func:`anchored_alignments`), by :func:`anchored_fit` over the points seen in all views with a prior, pooled
    (a point seen by two views counts twice, with each view's prior value; at most ``MAX_POOLED`` samples, drawn
    with the seeded generator); or why that fit is unreliable."""
    if len(points) == 0:
        return "the dataset has no sparse points"
    seen = [seen_points(v, points)[:2] for v in views if v.prior is not None]
    if not seen:
        return "no view has a prior"
    pv, z = torch.cat([s[0] for s in seen]), torch.cat([s[1] for s in seen])
    gen = torch.Generator().manual_seed(seed)
    if len(pv) > MAX_POOLED:
        keep = torch.randperm(len(pv), generator=gen)[:MAX_POOLED]
        pv, z = pv[keep], z[keep]
    fit = anchored_fit(pv, 1.0 / z if kind == "inverse_depth" else z, gen, threshold, min_inlier_ratio)
    return fit if isinstance(fit, str) else fit[:2]


def sequence_alignments(views: list[View], points: torch.Tensor, kind: str, line: tuple[float, float], seed: int = 0,
                        threshold: float = 0.5, min_inlier_ratio: float = 0.5, max_nodes: int = 1,
                        points_per_node: int = 15, smooth: float = 0.001) -> dict[str, Alignment]:
    """The sequence's one ``line = (scale, offset)`` (:func:`sequence_alignment`) for every view with a prior,
    except views that see enough points for a scale field of their own: those get :func:`field_or_line` from
    their own :func:`anchored_fit` (a frame's warp is its own even when its scale is shared), so views with few
    points keep the shared line and views with many get their warp corrected."""
    gen = torch.Generator().manual_seed(seed)
    fits: dict[str, Alignment] = {}
    for v in views:
        if v.prior is None:
            continue
        fits[v.key] = line
        pv, z, uv = seen_points(v, points)
        if max_nodes < 2 or field_nodes(len(pv), max_nodes, points_per_node) < 2:
            continue
        target = 1.0 / z if kind == "inverse_depth" else z
        own = anchored_fit(pv, target, gen, threshold, min_inlier_ratio)
        if not isinstance(own, str):
            fit = field_or_line(v, pv, target, uv, own, max_nodes, points_per_node, smooth)
            if isinstance(fit, ScaleField):
                fits[v.key] = fit
    return fits
