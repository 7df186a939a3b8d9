"""Alpha compositing of sorted 2D Gaussians per tile: numba kernels (forward and hand-written backward, the
algorithm of gsplat's `rasterize_to_pixels` CUDA kernels) wrapped in a torch.autograd.Function.

Kernels run in float64, in parallel over tiles. Each tile walks its Gaussians front to back (the backward: back to
front) and visits, for each, only the pixels of the tile inside the box of its ellipse ``sigma <= sigma cut`` (where
alpha can reach 1/255), keeping each pixel's transmittance and colour in tile-local buffers: every pixel sees the
same operations in the same order as a per-pixel loop would, so the images are identical, but a Gaussian that
grazes a tile costs the few pixels it touches, not the whole tile. The backward sums a Gaussian's gradient over its
pixels in registers and writes one row per intersection (each intersection belongs to one tile, so there are no
races); a serial pass sums the rows per Gaussian.
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
BOX_MARGIN = 1e-3  # pixels added around each ellipse's box, so rounding never drops a pixel the ellipse reaches
BOX_LIMIT = 1e7  # box half-size (pixels) cap: beyond any image, and safe to convert to int
# Columns of the per-Gaussian parameter rows and of the per-intersection gradient rows (colours follow).
_X, _Y, _CA, _CB, _CC, _OPAC, _SIGMA_CUT, _HALF_W, _HALF_H = range(9)
_ABS_X, _ABS_Y, _N_GRAD = 6, 7, 8


@numba.njit(inline="always")
def _pixel_box(par, k, x0, y0, x1, y1):
    """Pixel range [c0, c1) x [r0, r1) of the tile [x0, x1) x [y0, y1) whose centres lie in Gaussian k's box."""
    mx, my, hw, hh = par[k, _X], par[k, _Y], par[k, _HALF_W], par[k, _HALF_H]
    c0 = max(x0, int(math.floor(mx - hw - 0.5)))
    c1 = min(x1, int(math.floor(mx + hw - 0.5)) + 1)
    r0 = max(y0, int(math.floor(my - hh - 0.5)))
    r1 = min(y1, int(math.floor(my + hh - 0.5)) + 1)
    return c0, c1, r0, r1


@numba.njit(parallel=True, cache=True)
def _forward_kernel(params, colors, flatten_ids, offsets, width, height, tile_size, tile_width, tiles_per_image,
                    out_colors, out_trans, out_last):
    """params [P, 9] (x, y, conic a, b, c, opacity, sigma cut, box half-width, half-height), colors [P, D],
    flatten_ids [M] (tile-sorted), offsets [n_tiles + 1]. Writes out_colors [I, H, W, D] (no background),
    out_trans [I, H, W] final transmittance, out_last [I, H, W] number of intersections of the tile up to the last
    contributing one (0 if none)."""
    n_channels = colors.shape[1]
    for t in numba.prange(offsets.shape[0] - 1):
        image, tile = t // tiles_per_image, t % tiles_per_image
        y0, x0 = (tile // tile_width) * tile_size, (tile % tile_width) * tile_size
        y1, x1 = min(y0 + tile_size, height), min(x0 + tile_size, width)
        tw = x1 - x0
        ids = flatten_ids[offsets[t]:offsets[t + 1]]
        par = params[ids]
        col = colors[ids]
        n_pix = (y1 - y0) * tw
        trans = np.ones(n_pix)
        acc = np.zeros((n_pix, n_channels))
        last = np.zeros(n_pix, np.int32)
        done = np.zeros(n_pix, np.bool_)
        n_active = n_pix
        for k in range(ids.shape[0]):
            c0, c1, r0, r1 = _pixel_box(par, k, x0, y0, x1, y1)
            ca, cb, cc, opac, cut = par[k, _CA], par[k, _CB], par[k, _CC], par[k, _OPAC], par[k, _SIGMA_CUT]
            for i in range(r0, r1):
                dy = par[k, _Y] - (i + 0.5)
                for j in range(c0, c1):
                    p = (i - y0) * tw + j - x0
                    if done[p]:
                        continue
                    dx = par[k, _X] - (j + 0.5)
                    sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                    if sigma < 0.0 or sigma > cut:
                        continue
                    alpha = min(MAX_ALPHA, opac * math.exp(-sigma))
                    if alpha < ALPHA_THRESHOLD:
                        continue
                    next_trans = trans[p] * (1.0 - alpha)
                    if next_trans <= T_EPS:
                        done[p] = True
                        n_active -= 1
                        continue
                    weight = alpha * trans[p]
                    for ch in range(n_channels):
                        acc[p, ch] += col[k, ch] * weight
                    last[p] = k + 1
                    trans[p] = next_trans
            if n_active == 0:
                break
        for i in range(y0, y1):
            for j in range(x0, x1):
                p = (i - y0) * tw + j - x0
                for ch in range(n_channels):
                    out_colors[image, i, j, ch] = acc[p, ch]
                out_trans[image, i, j] = trans[p]
                out_last[image, i, j] = last[p]


@numba.njit(parallel=True, cache=True)
def _backward_kernel(params, colors, flatten_ids, offsets, width, height, tile_size, tile_width, tiles_per_image,
                     out_trans, out_last, v_colors, v_alphas, g_isect):
    """Back to front over each tile's contributors, recovering each pixel's transmittance from its final one.
    v_colors [I, H, W, D], v_alphas [I, H, W]: output gradients. Writes g_isect [M, 8 + D], one row per
    intersection: d/d(x, y, conic a, b, c, opacity), the per-pixel sum of |d/dx|, |d/dy|, then d/dcolour."""
    n_channels = colors.shape[1]
    for t in numba.prange(offsets.shape[0] - 1):
        image, tile = t // tiles_per_image, t % tiles_per_image
        y0, x0 = (tile // tile_width) * tile_size, (tile % tile_width) * tile_size
        y1, x1 = min(y0 + tile_size, height), min(x0 + tile_size, width)
        tw = x1 - x0
        start = offsets[t]
        ids = flatten_ids[start:offsets[t + 1]]
        par = params[ids]
        col = colors[ids]
        grad = g_isect[start:offsets[t + 1]]
        n_pix = (y1 - y0) * tw
        trans = np.empty(n_pix)
        behind = np.zeros((n_pix, n_channels))  # colour accumulated behind the current Gaussian
        last = np.empty(n_pix, np.int32)
        k_end = 0
        for i in range(y0, y1):
            for j in range(x0, x1):
                p = (i - y0) * tw + j - x0
                trans[p] = out_trans[image, i, j]
                last[p] = out_last[image, i, j]
                k_end = max(k_end, last[p])
        g_col = np.empty(n_channels)
        for k in range(k_end - 1, -1, -1):
            c0, c1, r0, r1 = _pixel_box(par, k, x0, y0, x1, y1)
            ca, cb, cc, opac, cut = par[k, _CA], par[k, _CB], par[k, _CC], par[k, _OPAC], par[k, _SIGMA_CUT]
            g_x = g_y = g_a = g_b = g_c = g_o = g_ax = g_ay = 0.0
            g_col[:] = 0.0
            for i in range(r0, r1):
                dy = par[k, _Y] - (i + 0.5)
                for j in range(c0, c1):
                    p = (i - y0) * tw + j - x0
                    if k >= last[p]:
                        continue
                    dx = par[k, _X] - (j + 0.5)
                    sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                    if sigma < 0.0 or sigma > cut:
                        continue
                    vis = math.exp(-sigma)
                    raw_alpha = opac * vis
                    alpha = min(MAX_ALPHA, raw_alpha)
                    if alpha < ALPHA_THRESHOLD:
                        continue
                    ra = 1.0 / (1.0 - alpha)
                    trans[p] *= ra
                    weight = alpha * trans[p]
                    v_alpha = out_trans[image, i, j] * ra * v_alphas[image, i, j]
                    for ch in range(n_channels):
                        v_c = v_colors[image, i, j, ch]
                        g_col[ch] += weight * v_c
                        v_alpha += (col[k, ch] * trans[p] - behind[p, ch] * ra) * v_c
                        behind[p, ch] += col[k, ch] * weight
                    if raw_alpha <= MAX_ALPHA:
                        v_sigma = -raw_alpha * v_alpha
                        gx = v_sigma * (ca * dx + cb * dy)
                        gy = v_sigma * (cb * dx + cc * dy)
                        g_x += gx
                        g_y += gy
                        g_a += 0.5 * v_sigma * dx * dx
                        g_b += v_sigma * dx * dy
                        g_c += 0.5 * v_sigma * dy * dy
                        g_o += vis * v_alpha
                        g_ax += abs(gx)
                        g_ay += abs(gy)
            grad[k, _X] = g_x
            grad[k, _Y] = g_y
            grad[k, _CA] = g_a
            grad[k, _CB] = g_b
            grad[k, _CC] = g_c
            grad[k, _OPAC] = g_o
            grad[k, _ABS_X] = g_ax
            grad[k, _ABS_Y] = g_ay
            for ch in range(n_channels):
                grad[k, _N_GRAD + ch] = g_col[ch]


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
    """Per-Gaussian rows [P, 9] in float64: mean, conic, opacity, the sigma beyond which alpha < 1/255 for sure
    (the kernels skip exp() there) and the half-sizes (pixels) of the box of the ellipse ``sigma <= sigma cut``:
    ``sqrt(2 cut Sigma_xx)``, ``sqrt(2 cut Sigma_yy)`` with ``Sigma`` the inverse of the conic (the whole tile when
    the conic is not positive definite; means2d are within reach of the image for any Gaussian with an
    intersection)."""
    opac = opacities.detach().double()
    sigma_cut = torch.log(torch.clamp(opac / ALPHA_THRESHOLD, min=1e-300)) + 1e-6
    a, b, c = conics.detach().double().unbind(-1)
    det = a * c - b * b
    ok = (det > 0) & (a > 0) & (c > 0)
    det = torch.where(ok, det, torch.ones_like(det))
    span = 2.0 * sigma_cut.clamp_min(0.0) / det
    half_w = torch.where(ok, torch.sqrt(span * c) + BOX_MARGIN, torch.full_like(det, BOX_LIMIT)).clamp_max(BOX_LIMIT)
    half_h = torch.where(ok, torch.sqrt(span * a) + BOX_MARGIN, torch.full_like(det, BOX_LIMIT)).clamp_max(BOX_LIMIT)
    return torch.stack([*means2d.detach().double().unbind(-1), a, b, c, opac, sigma_cut, half_w, half_h],
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
