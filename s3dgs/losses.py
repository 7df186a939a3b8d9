"""Training losses: photometric (L1 + SSIM) and the depth-prior losses.

Every depth loss compares a rendered map ``r [H, W]`` with a prior ``p [H, W]`` *in the prior's space*
(:func:`to_prior_space`: disparity ``1/depth`` for relative inverse-depth priors, depth for metric ones),
over ``mask [H, W]`` pixels, as a mean (independent of image size). Residuals are measured in the
prior's normalised units (:func:`normalize`: median 0, mean absolute deviation 1), so a loss value does
not depend on the scene's arbitrary scale nor on the prior's units, and one ``lambda_depth`` means the
same on every scene. What each loss is invariant to:

- ``ssi``: scale-and-shift invariant. Per image, the rendered map is fitted to the prior by closed-form
  least squares ``a*r + b ~ normalize(p)`` (no gradient through the solve), then L1. Invariant to the
  scene's scale and to any positive scale and any shift of the prior.
- ``pearson``: ``1 - corr(r, p)``. Invariant to positive scale and shift of both (so also scene scale).
- ``l1``: for metric priors. ``mean |k*r - p| / mean(p)`` with ``k`` one scene-to-metric factor for the
  whole scene (fitted once to the sparse points). Invariant to the units (a common scale of scene and
  prior, through ``k``), not to a per-image scale or shift of the prior: that is the information a
  metric prior adds.
- ``sparse``: the reference 3DGS implementation's recipe. Per image, a scale/offset mapping the prior
  onto the sparse points' inverse depth is fitted once (median / mean absolute deviation, see
  :mod:`s3dgs.alignment`); the loss is L1 between the rendered disparity and the aligned prior, in the
  prior's normalised units. Invariant to scene scale and to the prior's scale and shift (through the
  fit to the points), but not to how the rendering's own scale drifts from the points.
- ``anchored``: the prior aligned once per image to the sparse points by a robust fit
  (:func:`s3dgs.alignment.anchored_alignments`: RANSAC + least squares on the inliers, refined into a smooth
  scale field, a scale map, where the view sees enough points), then, in the
  prior's normalised units, Geman-McClure ``x^2 / (x^2 + c^2)`` of the residual plus ``grad_weight`` x the
  L1 of the residual's image gradient (finite differences between neighbouring pixels, i.e. between the
  gradients of the two maps). Residuals within half the prior's quantisation step (gradients within one
  step) cost nothing. Invariant to scene scale and to the prior's scale and shift (through the fit), like
  ``sparse``; the value term is bounded per pixel, so depth edges where the prior is blurred or wrong cannot
  dominate. Views without a reliable fit use ``ssi``.

Degenerate inputs keep every loss finite and its gradient bounded: a map counts as having a spread (standard or
mean absolute deviation) of at least ``MIN_REL_SPREAD`` (1%) of its mean magnitude (its level: the mean
disparity or depth). So ``ssi`` stretches a flat render (no spread over the mask) at most as far as a render
with 1% spread (it is still pulled towards the prior's shape, at a bounded rate), ``pearson`` treats it as
1% spread, and ``sparse``/``anchored`` measure residuals where the prior is flat over the mask in units of 1% of
the aligned prior's level (a residual of one unit is then a 1% relative error) instead of dividing by zero.
Maps with more spread than that (every normal view) are unaffected.
"""

from __future__ import annotations

import torch

from s3dgs.metrics import ssim_map

MIN_PIXELS = 16
MIN_REL_SPREAD = 0.01  # a map's spread counts as at least this fraction of its level (see module doc)


def spread_floor(x: torch.Tensor) -> torch.Tensor:
    """The least spread a map ``x`` (1-D values) counts as having: ``MIN_REL_SPREAD`` x its mean magnitude
    (at least 1e-12), detached."""
    return (MIN_REL_SPREAD * x.detach().abs().mean()).clamp_min(1e-12)


def photometric_loss(render: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None,
                     ssim_lambda: float = 0.2) -> torch.Tensor:
    """``(1 - ssim_lambda) * L1 + ssim_lambda * (1 - SSIM)`` of ``[C, H, W, 3]`` images, over ``mask [C, H, W]``."""
    if mask is not None:  # masked-out pixels take the target's value: no error there
        render = torch.where(mask[..., None], render, gt)
    l1 = (render - gt).abs()
    l1 = l1.mean() if mask is None else l1[mask].mean()
    s = ssim_map(render, gt)
    s = s.mean() if mask is None else s[mask].mean()
    return (1 - ssim_lambda) * l1 + ssim_lambda * (1 - s)


def to_prior_space(depth: torch.Tensor, kind: str, near: float = 1e-6) -> torch.Tensor:
    """Rendered z-depth -> the prior's quantity: disparity ``1/depth`` for ``inverse_depth`` priors."""
    return 1.0 / depth.clamp_min(near) if kind == "inverse_depth" else depth


def normalize(p: torch.Tensor) -> torch.Tensor:
    """``(p - median) / mean|p - median|``: the prior's normalised units (1-D values)."""
    med = p.median()
    return (p - med) / (p - med).abs().mean().clamp_min(1e-12)


def fit_affine(x: torch.Tensor, y: torch.Tensor, positive: bool = True, min_std: float | torch.Tensor = 1e-12
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form least squares ``a, b = argmin sum (a*x + b - y)^2`` over 1-D values, detached.

    With ``positive`` ``a`` is kept positive (a render whose depth order is inverted must not be rewarded
    for it): if the fit gives ``a <= 0``, ``a`` matches standard deviations instead. ``x``'s standard deviation
    counts as at least ``min_std``, so ``|a| <= std(y) / min_std`` (a flat ``x`` is not stretched without bound)."""
    x, y = x.detach().double(), y.detach().double()
    xc, yc = x - x.mean(), y - y.mean()
    sx = torch.maximum((xc * xc).mean().sqrt(), torch.as_tensor(min_std, dtype=torch.float64))
    a = (xc * yc).mean() / sx**2
    if positive and not a > 0:
        a = (yc * yc).mean().sqrt() / sx
    b = y.mean() - a * x.mean()
    return a.to(torch.float32), b.to(torch.float32)


Weight = torch.Tensor | None  # per-pixel confidence [H, W] in [0, 1] multiplying each pixel's term; None = 1


def weighted_mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """``mean(weight * values)`` over 1-D ``values`` (a plain mean without weights): pixels of low confidence count
    less, and a prior of low confidence everywhere pulls less than a confident one."""
    return values.mean() if weight is None else (weight * values).mean()


def ssi_loss(r: torch.Tensor, p: torch.Tensor, mask: torch.Tensor, weight: Weight = None) -> torch.Tensor:
    """Scale-and-shift-invariant L1: the render ``r`` fitted to the prior ``p`` per image (see module doc)."""
    r, pn = r[mask], normalize(p[mask])
    a, b = fit_affine(r, pn, min_std=spread_floor(r))
    return weighted_mean((a * r + b - pn).abs(), None if weight is None else weight[mask])


def pearson_loss(r: torch.Tensor, p: torch.Tensor, mask: torch.Tensor, weight: Weight = None) -> torch.Tensor:
    """``1 - Pearson correlation`` of ``r`` and ``p`` over ``mask`` (weighted by ``weight``: each pixel's share of the
    covariance and variances); ``r``'s standard deviation counts as at least :func:`spread_floor`."""
    r, p = r[mask], p[mask]
    w = torch.ones_like(r) if weight is None else weight[mask]
    sw = w.sum().clamp_min(1e-12)
    rc, pc = r - (w * r).sum() / sw, p - (w * p).sum() / sw
    var_r = torch.maximum((w * rc * rc).sum() / sw, spread_floor(r) ** 2)
    return 1 - (w * rc * pc).sum() / sw / (var_r * (w * pc * pc).sum() / sw).sqrt().clamp_min(1e-12)


def metric_l1_loss(r: torch.Tensor, p: torch.Tensor, mask: torch.Tensor, scene_to_metric: float,
                   weight: Weight = None) -> torch.Tensor:
    """Relative L1 ``mean|k*r - p| / mean(p)`` of rendered depth ``r`` (scene units) and metric prior ``p``."""
    p = p[mask]
    w = None if weight is None else weight[mask]
    return weighted_mean((scene_to_metric * r[mask] - p).abs(), w) / p.abs().mean().clamp_min(1e-12)


Scale = float | torch.Tensor  # one value, or a map [H, W] (a scale field, see s3dgs.alignment)


def aligned_residual(r: torch.Tensor, p: torch.Tensor, mask: torch.Tensor, scale: Scale, offset: Scale
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual ``[H, W]`` between the render ``r`` and the prior aligned to the sparse points, ``scale*p + offset``
    (values or maps ``[H, W]``), in the prior's normalised units: ``((r - offset) / scale - p) / mad``, ``mad`` the
    prior's mean absolute deviation over ``mask``, at least :func:`spread_floor` of the aligned prior in the
    prior's units, ``p + offset / scale``; returned with ``mad`` (in the prior's units)."""
    pm = p[mask]
    level = torch.broadcast_to(p + torch.as_tensor(offset) / scale, p.shape)[mask]
    mad = torch.maximum((pm - pm.median()).abs().mean(), spread_floor(level))
    return ((r - offset) / scale - p) / mad, mad


def sparse_loss(r: torch.Tensor, p: torch.Tensor, mask: torch.Tensor, scale: Scale, offset: Scale,
                weight: Weight = None) -> torch.Tensor:
    """L1 between rendered disparity ``r`` and the prior aligned to the sparse points, ``scale*p + offset``,
    in the prior's normalised units (divided by ``scale`` x the prior's mean absolute deviation)."""
    return weighted_mean(aligned_residual(r, p, mask, scale, offset)[0][mask].abs(),
                         None if weight is None else weight[mask])


def geman_mcclure(x: torch.Tensor, c: float) -> torch.Tensor:
    """``x^2 / (x^2 + c^2)``: quadratic below ``c``, bounded by 1 (a residual far beyond ``c`` barely pulls)."""
    x2 = x * x
    return x2 / (x2 + c * c)


def anchored_loss(r: torch.Tensor, p: torch.Tensor, mask: torch.Tensor, scale: Scale, offset: Scale,
                  robust_c: float = 0.25, grad_weight: float = 0.5, quant_step: float = 0.0,
                  weight: Weight = None) -> torch.Tensor:
    """Robust loss between the render ``r [H, W]`` (prior space, scene units) and the prior ``p [H, W]`` aligned to
    the sparse points (``scale*p + offset``), over ``mask [H, W]``, in the prior's normalised units ``x``:

    ``mean rho(shrink(x, h)) + grad_weight * mean relu(|dx| - 2h)``, ``rho`` Geman-McClure with scale
    ``robust_c``, ``shrink(x, h) = max(|x| - h, 0)``, ``dx`` the differences of ``x`` between horizontal /
    vertical neighbours that are both in ``mask`` (the difference of the two maps' finite-difference
    gradients, per pixel), ``h`` half the prior's quantisation step ``quant_step`` (prior units) in normalised
    units: a render within half a step of the prior everywhere costs nothing (its gradients then differ by at
    most one step), so smooth surfaces need not follow the prior's 16-bit staircase. With ``weight``, each
    pixel's term (each neighbour pair's: the lower of the two) is multiplied by its confidence."""
    x, mad = aligned_residual(r, p, mask, scale, offset)
    h = 0.5 * quant_step / mad
    value = weighted_mean(geman_mcclure(torch.relu(x[mask].abs() - h), robust_c), None if weight is None else weight[mask])
    if grad_weight <= 0:
        return value
    dx = [x[:, 1:] - x[:, :-1], x[1:] - x[:-1]]
    pairs = [mask[:, 1:] & mask[:, :-1], mask[1:] & mask[:-1]]
    grads = torch.cat([d[m] for d, m in zip(dx, pairs)])
    if len(grads) == 0:
        return value
    pair_weight = None if weight is None else torch.cat(
        [torch.minimum(a, b)[m] for a, b, m in zip((weight[:, 1:], weight[1:]), (weight[:, :-1], weight[:-1]), pairs)])
    return value + grad_weight * weighted_mean(torch.relu(grads.abs() - 2 * h), pair_weight)


def depth_loss(name: str, r: torch.Tensor, p: torch.Tensor, mask: torch.Tensor,
               align: tuple[Scale, Scale] | None = None, robust_c: float = 0.25, grad_weight: float = 0.5,
               quant_step: float = 0.0, weight: Weight = None) -> torch.Tensor | None:
    """The depth loss ``name`` (``anchored``, ``ssi``, ``pearson``, ``l1``, ``sparse``); ``None`` when it does not
    apply to this image (fewer than 16 usable pixels, or no alignment for ``l1``/``sparse``). ``align``: ``(k, 0)``
    for ``l1``, ``(scale, offset)`` for ``sparse`` and ``anchored`` (``anchored`` without one is ``ssi``: the
    fallback of a view without a reliable fit). ``robust_c``, ``grad_weight``, ``quant_step``: see
    :func:`anchored_loss`; ``weight``: the prior's per-pixel confidence ``[H, W]`` in [0, 1] (None: 1 everywhere)."""
    if int(mask.sum()) < MIN_PIXELS:
        return None
    if name == "ssi" or (name == "anchored" and align is None):
        return ssi_loss(r, p, mask, weight)
    if name == "pearson":
        return pearson_loss(r, p, mask, weight)
    if align is None:
        return None
    if name == "anchored":
        return anchored_loss(r, p, mask, *align, robust_c=robust_c, grad_weight=grad_weight, quant_step=quant_step,
                             weight=weight)
    if name == "l1":
        return metric_l1_loss(r, p, mask, align[0], weight)
    if name == "sparse":
        return sparse_loss(r, p, mask, *align, weight=weight)
    raise ValueError(f"depth_loss.name={name!r}: use anchored, ssi, pearson, l1 or sparse")
