"""Image and depth quality metrics (pure functions on tensors)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
