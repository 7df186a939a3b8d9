"""Small test images written to disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_rgb(path: Path, h: int = 24, w: int = 32, seed: int = 0, corner: tuple[int, int, int] | None = None,
              exif_orientation: int | None = None) -> np.ndarray:
    """Write a random RGB image (PNG or JPEG by suffix); return its uint8 pixels as stored."""
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    if corner is not None:
        rgb[0, 0] = corner
    im = Image.fromarray(rgb)
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        im.save(path, exif=exif, quality=95)
    else:
        im.save(path)
    return rgb
