"""Images for people: depth as colour-mapped inverse depth, renders as uint8, and the side-by-side PNGs of
``renders/`` (render | ground truth | depth), shared by the evaluation, TensorBoard and the viewer."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from preprocess.atomic_io import atomic_write_bytes

PERCENTILE_SAMPLES = 1 << 20  # depth colouring: percentiles from at most about this many pixels


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
