"""Compact storage of per-pixel maps: 8-bit images and 16-bit levels of a value range.

An image is kept as uint8 and converted to float32 ``value / 255`` on use, which gives back exactly what an 8-bit
file decodes to; an image that was resampled (downscaled, undistorted, alpha-composited) is rounded to the
nearest level, within ``0.5 / 255``. A depth prior or a confidence map is kept as :class:`Levels`: uint16 levels
of a range, the encoding of the depth PNGs themselves (:func:`preprocess.depth_png.quantize` / ``dequantize``), so
a prior stored on its own PNG's range decodes to the same float32 values it was read as, and a resampled one to
within half a level of that range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from preprocess.depth_png import MAX16, dequantize, quantize


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Float values in [0, 1] (any shape) -> uint8 levels, rounded to the nearest."""
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """A stored image or alpha (uint8, any shape, any device) -> float32 in [0, 1]; float32 passes unchanged."""
    return x.to(torch.float32).div_(255) if x.dtype == torch.uint8 else x


@dataclass(frozen=True)
class Levels:
    """A float map ``[H, W]`` as uint16 levels of ``[vmin, vmax]``: value ``vmin + level / 65535 (vmax - vmin)``,
    NaN at level ``nodata`` (a depth PNG's pixels without a value)."""

    levels: np.ndarray  # [H, W] uint16
    vmin: float
    vmax: float
    nodata: int | None = None

    @classmethod
    def encode(cls, x: np.ndarray, vmin: float, vmax: float) -> "Levels":
        """``x [H, W]`` (finite, within ``[vmin, vmax]``) at its nearest level."""
        return cls(quantize(x, vmin, vmax)[0], float(vmin), float(vmax))

    def decode(self) -> np.ndarray:
        """The float32 map ``[H, W]``: :func:`~preprocess.depth_png.dequantize`'s values, looked up per level."""
        table = dequantize(np.arange(MAX16 + 1, dtype=np.uint16), self.vmin, self.vmax)
        if self.nodata is not None:
            table[self.nodata] = np.nan
        return table[self.levels]

    @property
    def step(self) -> float:
        """One level, in the map's units."""
        return (self.vmax - self.vmin) / MAX16
