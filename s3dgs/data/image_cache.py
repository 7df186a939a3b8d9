"""Training images decoded once and kept within a memory budget, on the device that trains on them.

Each loaded view's image is a :class:`StoredImage`: it knows how to decode its pixels (read the file, resize,
undistort, composite: :func:`s3dgs.data.scene.decode_image`), and its scene's :class:`ImageCache` keeps the
decoded uint8 arrays of as many views as fit the budget. A capture that fits is decoded once; beyond the budget the
least recently used image is dropped and decoded again when next asked for. On CUDA the cache lives on the GPU, so
a training step indexes a device tensor instead of copying its image there.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from s3dgs.data.frames import DataError

GIB = 1 << 30
CPU_BUDGET = 2 * GIB  # images kept in RAM by default: start-up within 4 GB of peak RSS at any view count
GPU_FRACTION = 0.25  # of the GPU's memory, by default (1000 views at 1080p need 6.2 GB)


def cache_budget(setting: float | str | None, device: torch.device) -> int:
    """Bytes of decoded images to keep: ``setting`` in GB (GiB), or ``"auto"`` / None: :data:`CPU_BUDGET` in RAM,
    :data:`GPU_FRACTION` of the GPU's memory on CUDA."""
    if setting in (None, "auto"):
        if device.type == "cuda":
            return int(GPU_FRACTION * torch.cuda.get_device_properties(device).total_memory)
        return CPU_BUDGET
    try:
        gb = float(setting)
    except (TypeError, ValueError):
        gb = -1.0
    if gb < 0:
        raise DataError(f"data.image_cache_gb={setting!r}: use auto or a number of GB >= 0")
    return int(gb * GIB)


class ImageCache:
    """Decoded images (uint8 tensors on ``device``) of at most ``budget`` bytes in all, least recently used
    dropped first."""

    def __init__(self, budget: int, device: torch.device | str = "cpu"):
        self.budget, self.device = budget, torch.device(device)
        self.nbytes = 0
        self._kept: OrderedDict[StoredImage, torch.Tensor] = OrderedDict()

    def get(self, image: StoredImage) -> torch.Tensor:
        """``image``'s pixels ``[H, W, C]`` uint8 on the cache's device: the kept copy, else decoded now."""
        pixels = self._kept.get(image)
        if pixels is None:
            return self.put(image, image.decode())
        self._kept.move_to_end(image)
        return pixels

    def put(self, image: StoredImage, pixels: np.ndarray) -> torch.Tensor:
        """Keep ``pixels`` (uint8 ``[H, W, C]``) as ``image``'s on the cache's device, dropping the least recently
        used to make room (nothing is kept of an image larger than the budget); returns them on the device."""
        kept = torch.from_numpy(np.require(pixels, requirements="W")).to(self.device)
        if kept.nbytes <= self.budget:
            while self.nbytes + kept.nbytes > self.budget:
                self.nbytes -= self._kept.popitem(last=False)[1].nbytes
            self._kept[image] = kept
            self.nbytes += kept.nbytes
        return kept


@dataclass(frozen=True, eq=False)
class StoredImage:
    """A view's image, decoded by ``decode() -> uint8 [H, W, C]`` (``C = 4`` with alpha: the colour composited on
    the scene's background, then the alpha) and kept in ``cache``."""

    decode: Callable[[], np.ndarray]
    cache: ImageCache
    width: int
    height: int
    has_alpha: bool

    def pixels(self) -> torch.Tensor:
        """``[H, W, C]`` uint8 on the cache's device."""
        return self.cache.get(self)
