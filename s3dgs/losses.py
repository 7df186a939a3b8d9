"""Training losses: photometric (L1 + SSIM), and the pieces the depth losses share.

Every depth loss compares a rendered map ``r [H, W]`` with a prior ``p [H, W]`` *in the prior's space*
(:func:`to_prior_space`: disparity ``1/depth`` for relative inverse-depth priors, depth for metric ones),
over ``mask [H, W]`` pixels, as a mean (independent of image size). Residuals are measured in the
prior's normalised units (:func:`normalize`: median 0, mean absolute deviation 1), so a loss value does
not depend on the scene's arbitrary scale nor on the prior's units, and one ``lambda_depth`` means the
same on every scene. The losses themselves, and what each is invariant to, are :mod:`s3dgs.depth_terms`
(one module each); this module holds what they share.

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
