"""Tile binning: which Gaussians touch which tile, sorted front to back (gsplat's `isect_tiles` and
`isect_offset_encode`): tile bounds and depth order in PyTorch, a counting sort by tile in a small numba kernel."""

import math
from typing import Tuple

import numba
import numpy as np
import torch
from torch import Tensor


@numba.njit(cache=True)
def _bin_by_tile(order: np.ndarray, image_ids: np.ndarray, tile_min: np.ndarray, tile_max: np.ndarray,
                 depth_bits: np.ndarray, tile_width: int, tiles_per_image: int, n_images: int
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counting sort of (Gaussian, tile) pairs by tile, keeping `order` (front to back) inside each tile.

    order: [P] indices of visible projected Gaussians sorted by depth; tile_min/tile_max: [P, 2] int tile bounds
    (x, y; max exclusive); depth_bits: [P] float32 depth bits as int64. Returns offsets
    [n_images * tiles_per_image + 1], flatten_ids [n_isects] and gsplat's isect_ids [n_isects]
    (image << (tile_bits + 32) | tile << 32 | depth bits).
    """
    counts = np.zeros(n_images * tiles_per_image + 1, np.int64)
    for g in order:
        base = image_ids[g] * tiles_per_image
        for ty in range(tile_min[g, 1], tile_max[g, 1]):
            for tx in range(tile_min[g, 0], tile_max[g, 0]):
                counts[base + ty * tile_width + tx + 1] += 1
    offsets = np.cumsum(counts)
    cursor = offsets[:-1].copy()
    flatten_ids = np.empty(offsets[-1], np.int32)
    isect_ids = np.empty(offsets[-1], np.int64)
    tile_bits = 0
    while (1 << tile_bits) <= tiles_per_image:
        tile_bits += 1
    for g in order:
        image = image_ids[g]
        for ty in range(tile_min[g, 1], tile_max[g, 1]):
            for tx in range(tile_min[g, 0], tile_max[g, 0]):
                tile = ty * tile_width + tx
                pos = cursor[image * tiles_per_image + tile]
                flatten_ids[pos] = g
                isect_ids[pos] = (((image << tile_bits) | tile) << 32) | depth_bits[g]
                cursor[image * tiles_per_image + tile] = pos + 1
    return offsets, flatten_ids, isect_ids


def tile_bounds(means2d: Tensor, radii: Tensor, tile_size: int, tile_width: int, tile_height: int
                ) -> Tuple[Tensor, Tensor]:
    """Tile range each Gaussian's box covers. means2d [..., 2], radii [..., 2] -> tile_min, tile_max [..., 2]
    int64 (x, y), max exclusive, clamped to the tile grid."""
    tile_means = means2d.detach() / tile_size
    tile_radii = radii / tile_size
    limit = torch.tensor([tile_width, tile_height], device=means2d.device)
    tile_min = torch.minimum(torch.clamp(torch.floor(tile_means - tile_radii).long(), min=0), limit)
    tile_max = torch.minimum(torch.clamp(torch.ceil(tile_means + tile_radii).long(), min=0), limit)
    return tile_min, tile_max


@torch.no_grad()
def intersect_tiles(
    means2d: Tensor,  # [P, 2]
    radii: Tensor,  # [P, 2] int32
    depths: Tensor,  # [P]
    image_ids: Tensor,  # [P] int64
    n_images: int,
    tile_size: int,
    tile_width: int,
    tile_height: int,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Bin projected Gaussians into tiles of each image, front to back.

    Returns tiles_per_gauss [P] int32, isect_ids [M] int64 (gsplat's key: image | tile | float32 depth bits),
    flatten_ids [M] int32 (index into P), isect_offsets [n_images, tile_height, tile_width] int32 (start of
    each tile's range in flatten_ids).
    """
    tile_min, tile_max = tile_bounds(means2d, radii, tile_size, tile_width, tile_height)
    visible = (radii > 0).all(dim=-1)
    tiles_per_gauss = (tile_max - tile_min).prod(dim=-1) * visible
    visible_ids = torch.nonzero(visible & (tiles_per_gauss > 0))[:, 0]
    order = visible_ids[torch.argsort(depths.detach()[visible_ids], stable=True)]
    tiles_per_image = tile_width * tile_height
    depth_bits = depths.detach().to(torch.float32).view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    offsets, flatten_ids, isect_ids = _bin_by_tile(
        order.numpy(), image_ids.contiguous().numpy(), tile_min.numpy(), tile_max.numpy(), depth_bits.numpy(),
        tile_width, tiles_per_image, n_images)
    offsets, flatten_ids, isect_ids = (torch.from_numpy(a) for a in (offsets, flatten_ids, isect_ids))
    isect_offsets = offsets[:-1].to(torch.int32).reshape(n_images, tile_height, tile_width)
    return tiles_per_gauss.to(torch.int32), isect_ids, flatten_ids, isect_offsets


def n_tiles(width: int, height: int, tile_size: int) -> Tuple[int, int]:
    """(tile_width, tile_height) of the tile grid covering the image."""
    return math.ceil(width / tile_size), math.ceil(height / tile_size)
