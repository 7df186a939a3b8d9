"""Alpha compositing of sorted 2D Gaussians per tile: numba kernels (forward and hand-written backward, the
algorithm of gsplat's `rasterize_to_pixels` CUDA kernels) wrapped in a torch.autograd.Function.

Kernels run in float64, in parallel over tiles. Each tile gathers its Gaussians (front to back) into a local
buffer; the backward writes one gradient row per intersection (each intersection belongs to one tile, so there are
no races) and a serial pass sums the rows per Gaussian.
"""

import math
from typing import Callable, Optional, Tuple

import numba
import numpy as np
import torch
from torch import Tensor

from .projection import ALPHA_THRESHOLD

MAX_ALPHA = 0.999  # alpha is clamped to this
T_EPS = 1e-4  # a pixel stops before the transmittance would fall to this or below
SERIAL_WORK = 2_000_000  # below this many (pixel, intersection) pairs, one thread is faster than waking others
TILE_CHUNK = 4  # tiles per work item of the parallel loops
# Columns of the per-Gaussian parameter rows and of the per-intersection gradient rows (colours follow).
_X, _Y, _CA, _CB, _CC, _OPAC, _SIGMA_CUT = range(7)
_ABS_X, _ABS_Y, _N_GRAD = 6, 7, 8


@numba.njit(parallel=True, cache=True)
def _forward_kernel(params, colors, flatten_ids, offsets, width, height, tile_size, tile_width, tiles_per_image,
                    out_colors, out_trans, out_last):
    """params [P, 7] (x, y, conic a, b, c, opacity, sigma cut), colors [P, D], flatten_ids [M] (tile-sorted),
    offsets [n_tiles + 1]. Writes out_colors [I, H, W, D] (no background), out_trans [I, H, W] final transmittance,
    out_last [I, H, W] number of intersections of the tile up to the last contributing one (0 if none)."""
    n_channels = colors.shape[1]
    for t in numba.prange(offsets.shape[0] - 1):
        image, tile = t // tiles_per_image, t % tiles_per_image
        y0, x0 = (tile // tile_width) * tile_size, (tile % tile_width) * tile_size
        ids = flatten_ids[offsets[t]:offsets[t + 1]]
        par = params[ids]
        col = colors[ids]
        acc = np.empty(n_channels)
        for i in range(y0, min(y0 + tile_size, height)):
            py = i + 0.5
            for j in range(x0, min(x0 + tile_size, width)):
                px = j + 0.5
                trans = 1.0
                acc[:] = 0.0
                n_used = 0
                for k in range(ids.shape[0]):
                    dx = par[k, _X] - px
                    dy = par[k, _Y] - py
                    sigma = 0.5 * (par[k, _CA] * dx * dx + par[k, _CC] * dy * dy) + par[k, _CB] * dx * dy
                    if sigma < 0.0 or sigma > par[k, _SIGMA_CUT]:
                        continue
                    alpha = min(MAX_ALPHA, par[k, _OPAC] * math.exp(-sigma))
                    if alpha < ALPHA_THRESHOLD:
                        continue
                    next_trans = trans * (1.0 - alpha)
                    if next_trans <= T_EPS:
                        break
                    weight = alpha * trans
                    for ch in range(n_channels):
                        acc[ch] += col[k, ch] * weight
                    n_used = k + 1
                    trans = next_trans
                for ch in range(n_channels):
                    out_colors[image, i, j, ch] = acc[ch]
                out_trans[image, i, j] = trans
                out_last[image, i, j] = n_used


@numba.njit(parallel=True, cache=True)
def _backward_kernel(params, colors, flatten_ids, offsets, width, height, tile_size, tile_width, tiles_per_image,
                     out_trans, out_last, v_colors, v_alphas, g_isect):
    """Back to front over each pixel's contributors, recovering transmittance from the final one.
    v_colors [I, H, W, D], v_alphas [I, H, W]: output gradients. Writes g_isect [M, 8 + D], one row per
    intersection: d/d(x, y, conic a, b, c, opacity), the per-pixel sum of |d/dx|, |d/dy|, then d/dcolour."""
    n_channels = colors.shape[1]
    for t in numba.prange(offsets.shape[0] - 1):
        image, tile = t // tiles_per_image, t % tiles_per_image
        y0, x0 = (tile // tile_width) * tile_size, (tile % tile_width) * tile_size
        start = offsets[t]
        ids = flatten_ids[start:offsets[t + 1]]
        par = params[ids]
        col = colors[ids]
        grad = g_isect[start:offsets[t + 1]]
        behind = np.empty(n_channels)  # colour accumulated behind the current Gaussian
        for i in range(y0, min(y0 + tile_size, height)):
            py = i + 0.5
            for j in range(x0, min(x0 + tile_size, width)):
                px = j + 0.5
                trans_final = out_trans[image, i, j]
                trans = trans_final
                behind[:] = 0.0
                v_alpha_out = v_alphas[image, i, j]
                for k in range(out_last[image, i, j] - 1, -1, -1):
                    dx = par[k, _X] - px
                    dy = par[k, _Y] - py
                    ca, cb, cc = par[k, _CA], par[k, _CB], par[k, _CC]
                    sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                    if sigma < 0.0 or sigma > par[k, _SIGMA_CUT]:
                        continue
                    vis = math.exp(-sigma)
                    raw_alpha = par[k, _OPAC] * vis
                    alpha = min(MAX_ALPHA, raw_alpha)
                    if alpha < ALPHA_THRESHOLD:
                        continue
                    ra = 1.0 / (1.0 - alpha)
                    trans *= ra
                    weight = alpha * trans
                    v_alpha = trans_final * ra * v_alpha_out
                    for ch in range(n_channels):
                        v_c = v_colors[image, i, j, ch]
                        grad[k, _N_GRAD + ch] += weight * v_c
                        v_alpha += (col[k, ch] * trans - behind[ch] * ra) * v_c
                        behind[ch] += col[k, ch] * weight
                    if raw_alpha <= MAX_ALPHA:
                        v_sigma = -raw_alpha * v_alpha
                        gx = v_sigma * (ca * dx + cb * dy)
                        gy = v_sigma * (cb * dx + cc * dy)
                        grad[k, _X] += gx
                        grad[k, _Y] += gy
                        grad[k, _CA] += 0.5 * v_sigma * dx * dx
                        grad[k, _CB] += v_sigma * dx * dy
                        grad[k, _CC] += 0.5 * v_sigma * dy * dy
                        grad[k, _OPAC] += vis * v_alpha
                        grad[k, _ABS_X] += abs(gx)
                        grad[k, _ABS_Y] += abs(gy)


@numba.njit(cache=True)
def _sum_per_gaussian(g_isect, flatten_ids, n_gaussians):
    """Sum per-intersection gradient rows [M, K] into per-Gaussian rows [n_gaussians, K]."""
    out = np.zeros((n_gaussians, g_isect.shape[1]))
    for k in range(g_isect.shape[0]):
        out[flatten_ids[k]] += g_isect[k]
    return out


def _run_kernel(kernel: Callable, n_isects: int, tile_size: int, *args) -> None:
    """Run a parallel kernel with torch's thread count (one knob for both), or serially for tiny workloads.
    Tiles are handed out in chunks of TILE_CHUNK, so threads stay busy when the scene covers the image unevenly."""
    threads = 1 if n_isects * tile_size * tile_size < SERIAL_WORK else min(torch.get_num_threads(),
                                                                         numba.config.NUMBA_NUM_THREADS)
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        with numba.parallel_chunksize(TILE_CHUNK):
            kernel(*args)
    finally:
        numba.set_num_threads(previous)


def _pack_params(means2d: Tensor, conics: Tensor, opacities: Tensor) -> np.ndarray:
    """Per-Gaussian rows [P, 7] in float64; the last column is the sigma beyond which alpha < 1/255 for sure, so
    the kernels skip exp() there."""
    opac = opacities.detach().double()
    sigma_cut = torch.log(torch.clamp(opac / ALPHA_THRESHOLD, min=1e-300)) + 1e-6
    return torch.cat([means2d.detach().double(), conics.detach().double(), opac[:, None], sigma_cut[:, None]],
                     dim=1).numpy()


class _Composite(torch.autograd.Function):
    """Per-Gaussian 2D parameters [P, ...] + tile-sorted intersections -> images (no background) and alphas."""

    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, flatten_ids, offsets, width, height, tile_size,
                tile_width, n_images, absgrad_sink):
        params = _pack_params(means2d, conics, opacities)
        colors64 = colors.detach().double().contiguous().numpy()
        out_colors = np.empty((n_images, height, width, colors.shape[1]))
        out_trans = np.empty((n_images, height, width))
        out_last = np.empty((n_images, height, width), np.int32)
        tiles_per_image = (offsets.shape[0] - 1) // n_images
        ctx.inputs = (params, colors64, flatten_ids, offsets, width, height, tile_size, tile_width, tiles_per_image)
        _run_kernel(_forward_kernel, len(flatten_ids), tile_size, *ctx.inputs, out_colors, out_trans, out_last)
        ctx.outputs = (out_trans, out_last)
        ctx.absgrad_sink = absgrad_sink
        render_colors = torch.from_numpy(out_colors).to(means2d.dtype)
        render_alphas = torch.from_numpy(1.0 - out_trans).to(means2d.dtype)[..., None]
        return render_colors, render_alphas

    @staticmethod
    def backward(ctx, v_render_colors, v_render_alphas):
        params, colors64, flatten_ids = ctx.inputs[:3]
        g_isect = np.zeros((len(flatten_ids), _N_GRAD + colors64.shape[1]))
        _run_kernel(_backward_kernel, len(flatten_ids), ctx.inputs[6], *ctx.inputs, *ctx.outputs,
                    v_render_colors.double().contiguous().numpy(),
                    v_render_alphas[..., 0].double().contiguous().numpy(), g_isect)
        grads = torch.from_numpy(_sum_per_gaussian(g_isect, flatten_ids, len(params))).to(v_render_colors.dtype)
        if ctx.absgrad_sink is not None:
            ctx.absgrad_sink(grads[:, _ABS_X:_ABS_Y + 1])
        return (grads[:, _X:_Y + 1], grads[:, _CA:_CC + 1], grads[:, _N_GRAD:], grads[:, _OPAC],
                None, None, None, None, None, None, None, None)


def rasterize_to_pixels(
    means2d: Tensor,  # [C, N, 2] or [nnz, 2]
    conics: Tensor,  # [C, N, 3] or [nnz, 3]
    colors: Tensor,  # [C, N, D] or [nnz, D]
    opacities: Tensor,  # [C, N] or [nnz]
    image_width: int,
    image_height: int,
    tile_size: int,
    isect_offsets: Tensor,  # [C, tile_height, tile_width]
    flatten_ids: Tensor,  # [n_isects]
    backgrounds: Optional[Tensor] = None,  # [C, D]
    absgrad: bool = False,
) -> Tuple[Tensor, Tensor]:
    """Composite sorted Gaussians into C images, like gsplat's `rasterize_to_pixels`.

    Returns render_colors [C, H, W, D] and render_alphas [C, H, W, 1]. With `absgrad`, the backward sets
    `means2d.absgrad` (same shape as means2d) to the per-pixel sum of absolute 2D-mean gradients.
    """
    n_images, tile_height, tile_width = isect_offsets.shape
    n_channels = colors.shape[-1]
    ids = flatten_ids.to(torch.int32).contiguous().numpy()
    offsets = np.append(isect_offsets.reshape(-1).numpy().astype(np.int64), len(ids))

    absgrad_sink = None
    if absgrad and means2d.requires_grad:
        def absgrad_sink(g_abs: Tensor) -> None:
            means2d.absgrad = g_abs.reshape(means2d.shape)

    render_colors, render_alphas = _Composite.apply(
        means2d.reshape(-1, 2), conics.reshape(-1, 3), colors.reshape(-1, n_channels), opacities.reshape(-1), ids,
        offsets, image_width, image_height, tile_size, tile_width, n_images, absgrad_sink)
    if backgrounds is not None:
        render_colors = render_colors + (1.0 - render_alphas) * backgrounds[:, None, None, :]
    return render_colors, render_alphas
