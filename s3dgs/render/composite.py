"""Alpha compositing of sorted 2D Gaussians per tile: numba kernels (forward and hand-written backward, the
algorithm of gsplat's `rasterize_to_pixels` CUDA kernels) wrapped in a torch.autograd.Function.

Kernels run in float64 over tiles in parallel. Inputs are gathered per intersection (one row per
(tile, Gaussian) pair, in tile order), so each tile reads a contiguous range and the backward writes
per-intersection gradients without races; autograd of the gather sums them per Gaussian.
"""

import math
from typing import Optional, Tuple

import numba
import numpy as np
import torch
from torch import Tensor

from .projection import ALPHA_THRESHOLD

MAX_ALPHA = 0.999  # alpha is clamped to this
T_EPS = 1e-4  # a pixel stops before the transmittance would fall to this or below
# Gaussian row layout of the packed per-intersection parameters.
_X, _Y, _CA, _CB, _CC, _OPAC, _SIGMA_CUT = range(7)


@numba.njit(parallel=True, cache=True, fastmath=False)
def _forward_kernel(params, colors, offsets, width, height, tile_size, tile_width, tiles_per_image,
                    out_colors, out_trans, out_last):
    """params [M, 7] (x, y, conic a, b, c, opacity, sigma cut), colors [M, D], offsets [n_tiles + 1].
    Writes out_colors [I, H, W, D] (no background), out_trans [I, H, W] final transmittance,
    out_last [I, H, W] index of the last contributing intersection (range start - 1 if none)."""
    n_channels = colors.shape[1]
    for t in numba.prange(offsets.shape[0] - 1):
        image, tile = t // tiles_per_image, t % tiles_per_image
        y0, x0 = (tile // tile_width) * tile_size, (tile % tile_width) * tile_size
        start, end = offsets[t], offsets[t + 1]
        acc = np.empty(n_channels)
        for i in range(y0, min(y0 + tile_size, height)):
            py = i + 0.5
            for j in range(x0, min(x0 + tile_size, width)):
                px = j + 0.5
                trans = 1.0
                acc[:] = 0.0
                last = start - 1
                for k in range(start, end):
                    dx = params[k, _X] - px
                    dy = params[k, _Y] - py
                    sigma = 0.5 * (params[k, _CA] * dx * dx + params[k, _CC] * dy * dy) + params[k, _CB] * dx * dy
                    if sigma < 0.0 or sigma > params[k, _SIGMA_CUT]:
                        continue
                    alpha = min(MAX_ALPHA, params[k, _OPAC] * math.exp(-sigma))
                    if alpha < ALPHA_THRESHOLD:
                        continue
                    next_trans = trans * (1.0 - alpha)
                    if next_trans <= T_EPS:
                        break
                    weight = alpha * trans
                    for ch in range(n_channels):
                        acc[ch] += colors[k, ch] * weight
                    last = k
                    trans = next_trans
                for ch in range(n_channels):
                    out_colors[image, i, j, ch] = acc[ch]
                out_trans[image, i, j] = trans
                out_last[image, i, j] = last


@numba.njit(parallel=True, cache=True, fastmath=False)
def _backward_kernel(params, colors, offsets, width, height, tile_size, tile_width, tiles_per_image,
                     out_trans, out_last, v_colors, v_alphas, g_params, g_colors, g_abs):
    """Back to front over each pixel's contributors, recovering transmittance from the final one.
    v_colors [I, H, W, D], v_alphas [I, H, W]: output gradients. Writes per-intersection gradients
    g_params [M, 6] (x, y, conic a, b, c, opacity), g_colors [M, D], g_abs [M, 2] (sum of |d/dxy| per pixel)."""
    n_channels = colors.shape[1]
    for t in numba.prange(offsets.shape[0] - 1):
        image, tile = t // tiles_per_image, t % tiles_per_image
        y0, x0 = (tile // tile_width) * tile_size, (tile % tile_width) * tile_size
        start = offsets[t]
        behind = np.empty(n_channels)  # colour accumulated behind the current Gaussian
        for i in range(y0, min(y0 + tile_size, height)):
            py = i + 0.5
            for j in range(x0, min(x0 + tile_size, width)):
                px = j + 0.5
                trans_final = out_trans[image, i, j]
                trans = trans_final
                behind[:] = 0.0
                v_alpha_out = v_alphas[image, i, j]
                for k in range(out_last[image, i, j], start - 1, -1):
                    dx = params[k, _X] - px
                    dy = params[k, _Y] - py
                    ca, cb, cc = params[k, _CA], params[k, _CB], params[k, _CC]
                    sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                    if sigma < 0.0 or sigma > params[k, _SIGMA_CUT]:
                        continue
                    vis = math.exp(-sigma)
                    raw_alpha = params[k, _OPAC] * vis
                    alpha = min(MAX_ALPHA, raw_alpha)
                    if alpha < ALPHA_THRESHOLD:
                        continue
                    ra = 1.0 / (1.0 - alpha)
                    trans *= ra
                    weight = alpha * trans
                    v_alpha = trans_final * ra * v_alpha_out
                    for ch in range(n_channels):
                        v_c = v_colors[image, i, j, ch]
                        g_colors[k, ch] += weight * v_c
                        v_alpha += (colors[k, ch] * trans - behind[ch] * ra) * v_c
                        behind[ch] += colors[k, ch] * weight
                    if raw_alpha <= MAX_ALPHA:
                        v_sigma = -raw_alpha * v_alpha
                        g_params[k, 2] += 0.5 * v_sigma * dx * dx
                        g_params[k, 3] += v_sigma * dx * dy
                        g_params[k, 4] += 0.5 * v_sigma * dy * dy
                        gx = v_sigma * (ca * dx + cb * dy)
                        gy = v_sigma * (cb * dx + cc * dy)
                        g_params[k, 0] += gx
                        g_params[k, 1] += gy
                        g_abs[k, 0] += abs(gx)
                        g_abs[k, 1] += abs(gy)
                        g_params[k, 5] += vis * v_alpha


def _pack_params(means2d: Tensor, conics: Tensor, opacities: Tensor) -> np.ndarray:
    """Per-intersection rows [M, 7] in float64; the last column is the sigma beyond which alpha < 1/255 for sure,
    so the kernels skip exp() there."""
    opac = opacities.detach().double()
    sigma_cut = torch.log(torch.clamp(opac / ALPHA_THRESHOLD, min=1e-300)) + 1e-6
    return torch.cat([means2d.detach().double(), conics.detach().double(), opac[:, None], sigma_cut[:, None]],
                     dim=1).contiguous().numpy()


class _Composite(torch.autograd.Function):
    """Per-intersection inputs -> images (no background) and alphas."""

    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, offsets, width, height, tile_size, tile_width,
                n_images, absgrad_sink):
        params = _pack_params(means2d, conics, opacities)
        colors64 = colors.detach().double().contiguous().numpy()
        n_channels = colors.shape[1]
        out_colors = np.empty((n_images, height, width, n_channels))
        out_trans = np.empty((n_images, height, width))
        out_last = np.empty((n_images, height, width), np.int64)
        tiles_per_image = (offsets.shape[0] - 1) // n_images
        _forward_kernel(params, colors64, offsets, width, height, tile_size, tile_width, tiles_per_image,
                        out_colors, out_trans, out_last)
        ctx.geometry = (params, colors64, offsets, width, height, tile_size, tile_width, tiles_per_image)
        ctx.out_trans, ctx.out_last = out_trans, out_last
        ctx.absgrad_sink = absgrad_sink
        dtype = means2d.dtype
        render_colors = torch.from_numpy(out_colors).to(dtype)
        render_alphas = torch.from_numpy(1.0 - out_trans).to(dtype)[..., None]
        return render_colors, render_alphas

    @staticmethod
    def backward(ctx, v_render_colors, v_render_alphas):
        params, colors64 = ctx.geometry[0], ctx.geometry[1]
        n_isects, n_channels = colors64.shape
        g_params = np.zeros((n_isects, 6))
        g_colors = np.zeros((n_isects, n_channels))
        g_abs = np.zeros((n_isects, 2))
        _backward_kernel(*ctx.geometry, ctx.out_trans, ctx.out_last,
                         v_render_colors.double().contiguous().numpy(),
                         v_render_alphas[..., 0].double().contiguous().numpy(), g_params, g_colors, g_abs)
        dtype = v_render_colors.dtype
        g_params = torch.from_numpy(g_params).to(dtype)
        if ctx.absgrad_sink is not None:
            ctx.absgrad_sink(torch.from_numpy(g_abs).to(dtype))
        return (g_params[:, 0:2], g_params[:, 2:5], torch.from_numpy(g_colors).to(dtype), g_params[:, 5],
                None, None, None, None, None, None, None)


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
    ids = flatten_ids.long()
    offsets = torch.cat([isect_offsets.reshape(-1).long(), torch.tensor([ids.numel()])]).numpy()

    absgrad_sink = None
    if absgrad and means2d.requires_grad:
        def absgrad_sink(g_abs: Tensor) -> None:
            flat = torch.zeros(means2d.numel() // 2, 2, dtype=g_abs.dtype).index_add_(0, ids, g_abs)
            means2d.absgrad = flat.reshape(means2d.shape)

    render_colors, render_alphas = _Composite.apply(
        means2d.reshape(-1, 2)[ids], conics.reshape(-1, 3)[ids], colors.reshape(-1, n_channels)[ids],
        opacities.reshape(-1)[ids], offsets, image_width, image_height, tile_size, tile_width, n_images,
        absgrad_sink)
    if backgrounds is not None:
        render_colors = render_colors + (1.0 - render_alphas) * backgrounds[:, None, None, :]
    return render_colors, render_alphas
