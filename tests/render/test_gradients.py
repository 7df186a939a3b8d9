"""Gradients: our hand-written backward against autograd of the slow reference, and finite differences."""

import pytest
import torch

from s3dgs.render import rasterization
from s3dgs.render.composite import rasterize_to_pixels
from s3dgs.render.tiles import intersect_tiles

from .conftest import render_reference

PARAMS = ("means", "quats", "scales", "opacities", "colors")


def _grads(render, s, weights, alpha_weights):
    leaves = {k: s[k].detach().clone().requires_grad_() for k in PARAMS}
    colors, alphas, means2d, ids = render({**s, **leaves})
    ((colors * weights).sum() + (alphas * alpha_weights).sum()).backward()
    return {k: v.grad for k, v in leaves.items()}, means2d.grad, ids


def _ours(render_mode, backgrounds, rasterize_mode, packed):
    def render(s):
        colors, alphas, info = rasterization(
            s["means"], s["quats"], s["scales"], s["opacities"], s["colors"], s["viewmats"], s["Ks"], s["width"],
            s["height"], sh_degree=s["sh_degree"], backgrounds=backgrounds, render_mode=render_mode,
            rasterize_mode=rasterize_mode, packed=packed)
        info["means2d"].retain_grad()
        return colors, alphas, info["means2d"], (info["camera_ids"], info["gaussian_ids"])
    return render


def _reference(render_mode, backgrounds, rasterize_mode):
    def render(s):
        return *render_reference(**s, backgrounds=backgrounds, render_mode=render_mode,
                                 rasterize_mode=rasterize_mode), None
    return render


@pytest.mark.parametrize("render_mode,sh_degree,rasterize_mode,packed", [
    ("RGB", None, "classic", False),
    ("RGB+ED", 3, "classic", False),
    ("RGB+D", 0, "antialiased", True),
    ("ED", None, "classic", True),
])
def test_gradients_match_reference(scene, render_mode, sh_degree, rasterize_mode, packed):
    s = scene(40, n_cams=2, sh_degree=sh_degree, seed=5)
    backgrounds = torch.tensor([[0.3, 0.6, 0.1], [0.9, 0.2, 0.5]], dtype=torch.float64)
    n_ch = {"RGB": 3, "ED": 1, "RGB+D": 4, "RGB+ED": 4}[render_mode]
    g = torch.Generator().manual_seed(0)
    weights = torch.rand(2, 32, 40, n_ch, generator=g, dtype=torch.float64) - 0.3
    alpha_weights = torch.rand(2, 32, 40, 1, generator=g, dtype=torch.float64) - 0.5

    ours, ours_m2d, (cam_ids, gauss_ids) = _grads(_ours(render_mode, backgrounds, rasterize_mode, packed), s,
                                                  weights, alpha_weights)
    ref, ref_m2d, _ = _grads(_reference(render_mode, backgrounds, rasterize_mode), s, weights, alpha_weights)
    for name in PARAMS:
        if name == "colors" and render_mode in ("D", "ED"):
            assert ours[name] is None and ref[name] is None  # colours do not reach a depth-only image
            continue
        assert ref[name].abs().max() > 0, name
        torch.testing.assert_close(ours[name], ref[name], rtol=1e-4, atol=1e-4 * ref[name].abs().max().item(),
                                   msg=lambda m: f"{name}: {m}")
    if packed:  # means2d is [nnz, 2], one row per visible (camera, Gaussian)
        visible_ref = ref_m2d[cam_ids, gauss_ids]
        assert ref_m2d.abs().sum() == pytest.approx(visible_ref.abs().sum().item())
        ref_m2d = visible_ref
    torch.testing.assert_close(ours_m2d, ref_m2d, rtol=1e-4, atol=1e-4 * ref_m2d.abs().max().item())


def test_absgrad_is_sum_of_absolute_pixel_gradients(scene):
    s = scene(30, n_cams=1, seed=6)
    leaves = {k: s[k].clone().requires_grad_() for k in PARAMS}
    colors, alphas, info = rasterization(*(leaves[k] for k in PARAMS), s["viewmats"], s["Ks"], 40, 32,
                                         absgrad=True, packed=False)
    info["means2d"].retain_grad()
    colors.sum().backward()
    grad, absgrad = info["means2d"].grad, info["means2d"].absgrad
    assert absgrad.shape == grad.shape == (1, 30, 2)
    assert (absgrad >= grad.abs() - 1e-12).all() and (absgrad > grad.abs() + 1e-6).any()
    # a single pixel's loss: absgrad equals |grad| exactly
    leaves = {k: s[k].clone().requires_grad_() for k in PARAMS}
    colors, _, info = rasterization(*(leaves[k] for k in PARAMS), s["viewmats"], s["Ks"], 40, 32, absgrad=True,
                                    packed=False)
    info["means2d"].retain_grad()
    colors[0, 16, 20].sum().backward()
    torch.testing.assert_close(info["means2d"].absgrad, info["means2d"].grad.abs())


def test_gradcheck_full_pipeline_float64(scene):
    s = scene(8, n_cams=2, width=12, height=10, seed=7, degenerate=False)
    s["Ks"][:, :2] *= 0.3
    s["scales"] *= 1.5

    def render(means, quats, scales, opacities, colors):
        out, alphas, _ = rasterization(means, quats, scales, opacities, colors, s["viewmats"], s["Ks"], 12, 10,
                                       render_mode="RGB+ED", backgrounds=torch.ones(2, 3, dtype=torch.float64))
        return out, alphas

    inputs = tuple(s[k].clone().requires_grad_() for k in PARAMS)
    assert render(*inputs)[1].max() > 0.5
    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


def test_gradcheck_compositing_float64():
    """The hand-written backward of the compositing kernel alone, on overlapping 2D Gaussians."""
    g = torch.Generator().manual_seed(3)
    n = 6
    means2d = (torch.rand(1, n, 2, generator=g, dtype=torch.float64) * torch.tensor([20.0, 12.0]) + 2).requires_grad_()
    conics = torch.tensor([0.08, 0.01, 0.1], dtype=torch.float64).repeat(1, n, 1)
    conics = (conics * (1 + torch.rand(1, n, 1, generator=g, dtype=torch.float64))).requires_grad_()
    colors = torch.rand(1, n, 2, generator=g, dtype=torch.float64, requires_grad=True)
    opacities = (torch.rand(1, n, generator=g, dtype=torch.float64) * 0.7 + 0.25).requires_grad_()
    depths = torch.rand(n, generator=g, dtype=torch.float64)
    radii = torch.full((n, 2), 9, dtype=torch.int32)
    _, _, flatten_ids, offsets = intersect_tiles(means2d.detach()[0], radii, depths, torch.zeros(n).long(), 1, 8, 3, 2)

    def composite(means2d, conics, colors, opacities):
        return rasterize_to_pixels(means2d, conics, colors, opacities, 24, 16, 8, offsets, flatten_ids,
                                   backgrounds=torch.tensor([[0.5, 0.2]], dtype=torch.float64))

    assert torch.autograd.gradcheck(composite, (means2d, conics, colors, opacities), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_gradients_match_reference_when_pixels_saturate(scene):
    """Dense, nearly opaque Gaussians: most pixels stop early (transmittance <= 1e-4) and the backward recovers
    transmittance by division through alphas up to 0.999."""
    s = scene(150, n_cams=1, seed=11)
    s["opacities"] = s["opacities"] * 0.1 + 0.9
    s["scales"] = s["scales"] * 2
    weights = torch.rand(1, 32, 40, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    alpha_weights = torch.ones(1, 32, 40, 1, dtype=torch.float64)
    ours, _, _ = _grads(_ours("RGB", None, "classic", False), s, weights, alpha_weights)
    ref, _, _ = _grads(_reference("RGB", None, "classic"), s, weights, alpha_weights)
    colors, alphas, _ = rasterization(s["means"], s["quats"], s["scales"], s["opacities"], s["colors"],
                                      s["viewmats"], s["Ks"], 40, 32)
    assert (alphas > 0.9998).float().mean() > 0.2  # many pixels reached the stop
    for name in PARAMS:
        torch.testing.assert_close(ours[name], ref[name], rtol=1e-4, atol=1e-4 * ref[name].abs().max().item())
