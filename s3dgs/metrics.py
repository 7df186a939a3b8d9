"""Image and depth quality metrics (pure functions on tensors)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _gaussian_window(size: int = 11, sigma: float = 1.5, channels: int = 3) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-x**2 / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim_map(img: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM (11x11 Gaussian window, sigma 1.5, as in 3DGS) of ``img``/``ref`` ``[C, H, W, 3]``
    in [0, 1]; returns ``[C, H, W]`` (mean over colour channels), zero-padded at the borders."""
    x, y = img.permute(0, 3, 1, 2), ref.permute(0, 3, 1, 2)
    w = _gaussian_window(channels=x.shape[1]).to(x)
    conv = lambda t: F.conv2d(t, w, padding=w.shape[-1] // 2, groups=x.shape[1])  # noqa: E731
    mu_x, mu_y = conv(x), conv(y)
    sxx, syy, sxy = conv(x * x) - mu_x**2, conv(y * y) - mu_y**2, conv(x * y) - mu_x * mu_y
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


def depth_metrics(depth: torch.Tensor, gt: torch.Tensor) -> dict[str, float]:
    """AbsRel and delta1 of rendered z-depth ``[H, W]`` against ground truth ``[H, W]`` (0 = unknown), after
    one least-squares scale ``s = argmin sum (s*depth - gt)^2`` over known pixels (removes the scene's
    arbitrary scale). Pixels the render leaves empty count with their (zero) depth."""
    valid = gt > 0
    d, g = depth[valid].double(), gt[valid].double()
    s = (d * g).sum() / (d * d).sum().clamp_min(1e-12)
    d = s * d
    ratio = torch.maximum(d / g, g / d.clamp_min(1e-12))
    return {"abs_rel": float(((d - g).abs() / g).mean()), "delta1": float((ratio < 1.25).double().mean())}
