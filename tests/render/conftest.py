"""Scenes and an independent slow reference renderer for the rasterizer tests.

The reference projects with gsplat's pure-PyTorch `_fully_fused_projection` and `_spherical_harmonics` and then
composites every pixel sequentially over all visible Gaussians in depth order (no tiles), applying gsplat's rules:
pixel centres at +0.5, alpha = min(0.999, opacity * exp(-sigma)), skip sigma < 0 or alpha < 1/255, stop before the
transmittance would reach 1e-4, background weighted by the final transmittance, ED = D / max(alpha, 1e-10).
Everything is PyTorch autograd, so it is also the gradient reference.
"""

import math
from typing import Dict, Optional

import pytest
import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci, _spherical_harmonics


def make_scene(n: int, n_cams: int = 2, sh_degree: Optional[int] = None, width: int = 40, height: int = 32,
               seed: int = 0, dtype=torch.float64, degenerate: bool = True) -> Dict:
    """Random Gaussians in front of `n_cams` cameras; with `degenerate`, the last 8 are behind a camera, far
    outside the image, tiny, huge, fully transparent or nearly opaque."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * torch.tensor([0.6, 0.5, 0.4], dtype=dtype)
    means[:, 2] += 3.0
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * 0.12 + 0.02
    opacities = torch.rand(n, generator=g, dtype=dtype) * 0.9 + 0.05
    if degenerate:
        means[-8] = torch.tensor([0.0, 0.0, -2.0])  # behind the camera
        means[-7] = torch.tensor([30.0, 0.0, 3.0])  # far outside the image
        scales[-6] = 1e-5  # tiny: only eps2d keeps it visible
        means[-5] = torch.tensor([1.5, 0.8, 3.0])
        scales[-5] = torch.tensor([1.0, 0.6, 0.5])  # huge: wider than the image
        opacities[-4] = 0.001  # below 1/255 everywhere
        opacities[-3] = 1.0  # saturates at alpha 0.999
        means[-2] = torch.tensor([0.0, 0.0, 0.005])  # in front of the camera but nearer than the near plane
        scales[-1] = torch.tensor([1e-4, 0.3, 1e-4])  # needle
    if sh_degree is None:
        colors = torch.rand(n, 3, generator=g, dtype=dtype)
    else:
        colors = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g, dtype=dtype) * 0.3
    viewmats = torch.eye(4, dtype=dtype).repeat(n_cams, 1, 1)
    for c in range(1, n_cams):  # rotate about y around the scene centre and shift
        ang = 0.25 * c
        rot = torch.tensor([[math.cos(ang), 0, math.sin(ang)], [0, 1, 0], [-math.sin(ang), 0, math.cos(ang)]],
                           dtype=dtype)
        viewmats[c, :3, :3] = rot
        viewmats[c, :3, 3] = torch.tensor([0.1 * c, -0.05 * c, 0.0]) - rot @ torch.tensor([0, 0, 3.0], dtype=dtype) \
            + torch.tensor([0, 0, 3.0], dtype=dtype)
    Ks = torch.tensor([[45.0, 0, width / 2 + 0.3], [0, 47.0, height / 2 - 0.7], [0, 0, 1]], dtype=dtype)
    Ks = Ks.repeat(n_cams, 1, 1)
    return dict(means=means, quats=quats, scales=scales, opacities=opacities, colors=colors, viewmats=viewmats,
                Ks=Ks, width=width, height=height, sh_degree=sh_degree)


def composite_reference(means2d, conics, colors, opacities, depths, visible, width, height, background=None):
    """One image, sequentially over Gaussians in depth order, vectorised over pixels.

    means2d [N, 2], conics [N, 3], colors [N, D], opacities [N], depths [N], visible [N] bool.
    Returns colors [H, W, D] and alphas [H, W, 1]."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=means2d.dtype), torch.arange(width, dtype=means2d.dtype),
                            indexing="ij")
    px, py = xs.reshape(-1) + 0.5, ys.reshape(-1) + 0.5
    trans = torch.ones_like(px)
    done = torch.zeros_like(px, dtype=torch.bool)
    out = torch.zeros(px.shape[0], colors.shape[-1], dtype=means2d.dtype)
    ids = torch.nonzero(visible)[:, 0]
    for g in ids[torch.argsort(depths.detach()[ids], stable=True)].tolist():
        dx, dy = means2d[g, 0] - px, means2d[g, 1] - py
        sigma = 0.5 * (conics[g, 0] * dx * dx + conics[g, 2] * dy * dy) + conics[g, 1] * dx * dy
        alpha = torch.clamp(opacities[g] * torch.exp(-sigma), max=0.999)
        hit = (sigma >= 0) & (alpha >= 1.0 / 255.0) & ~done
        next_trans = trans * (1.0 - alpha)
        stop = hit & (next_trans <= 1e-4)
        done = done | stop
        use = hit & ~stop
        out = out + torch.where(use[:, None], colors[g] * (alpha * trans)[:, None], torch.zeros_like(out))
        trans = torch.where(use, next_trans, trans)
    if background is not None:
        out = out + trans[:, None] * background
    return out.reshape(height, width, -1), (1.0 - trans).reshape(height, width, 1)


def render_reference(means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree=None,
                     backgrounds=None, render_mode="RGB", rasterize_mode="classic", eps2d=0.3, near_plane=0.01,
                     far_plane=1e10, **_):
    """Slow reference of `rasterization` for C cameras: returns colors [C, H, W, X], alphas [C, H, W, 1],
    means2d [C, N, 2] (a non-leaf tensor that retains its gradient)."""
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    radii, means2d, depths, conics, comp = _fully_fused_projection(
        means, covars, viewmats, Ks, width, height, eps2d=eps2d, near_plane=near_plane, far_plane=far_plane,
        calc_compensations=rasterize_mode == "antialiased")
    if means2d.requires_grad:
        means2d.retain_grad()
    opac = opacities[None].expand_as(depths)
    if comp is not None:
        opac = opac * comp
    if sh_degree is not None:
        campos = torch.inverse(viewmats)[:, :3, 3]
        dirs = means[None] - campos[:, None]
        cols = torch.clamp_min(_spherical_harmonics(sh_degree, dirs, colors[None].expand(len(Ks), -1, -1, -1))
                               + 0.5, 0.0)
    else:
        cols = colors[None].expand(len(Ks), -1, -1)
    if render_mode in ("D", "ED"):
        cols = depths[..., None]
    elif render_mode in ("RGB+D", "RGB+ED"):
        cols = torch.cat([cols, depths[..., None]], dim=-1)
    images, alphas = [], []
    for c in range(len(Ks)):
        bg = None
        if backgrounds is not None:
            bg = backgrounds[c]
            if render_mode in ("D", "ED"):
                bg = torch.zeros(1, dtype=bg.dtype)
            elif render_mode in ("RGB+D", "RGB+ED"):
                bg = torch.cat([bg, torch.zeros(1, dtype=bg.dtype)])
        visible = (radii[c] > 0).all(dim=-1)
        img, alpha = composite_reference(means2d[c], conics[c], cols[c], opac[c], depths[c], visible, width,
                                         height, bg)
        if render_mode in ("ED", "RGB+ED"):
            img = torch.cat([img[..., :-1], img[..., -1:] / alpha.clamp(min=1e-10)], dim=-1)
        images.append(img)
        alphas.append(alpha)
    return torch.stack(images), torch.stack(alphas), means2d


@pytest.fixture
def scene():
    return make_scene
