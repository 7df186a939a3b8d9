"""Rendered images and alphas against the slow per-pixel reference (conftest.render_reference)."""

import pytest
import torch

from s3dgs.render import rasterization

from .conftest import render_reference


def _inputs(s):
    return (s["means"], s["quats"], s["scales"], s["opacities"], s["colors"], s["viewmats"], s["Ks"],
            s["width"], s["height"])


@pytest.mark.parametrize("render_mode", ["RGB", "D", "ED", "RGB+D", "RGB+ED"])
@pytest.mark.parametrize("sh_degree", [None, 0, 3])
def test_images_match_reference(scene, render_mode, sh_degree):
    s = scene(60, n_cams=2, sh_degree=sh_degree, seed=1)
    backgrounds = torch.tensor([[0.2, 0.5, 0.9], [1.0, 0.0, 0.3]], dtype=torch.float64)
    colors, alphas, info = rasterization(*_inputs(s), sh_degree=sh_degree, backgrounds=backgrounds,
                                         render_mode=render_mode, packed=False)
    ref_colors, ref_alphas, _ = render_reference(**s, backgrounds=backgrounds, render_mode=render_mode)
    channels = {"RGB": 3, "D": 1, "ED": 1, "RGB+D": 4, "RGB+ED": 4}[render_mode]
    assert colors.shape == (2, 32, 40, channels) and alphas.shape == (2, 32, 40, 1)
    assert colors.dtype == torch.float64
    torch.testing.assert_close(alphas, ref_alphas, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(colors, ref_colors, rtol=1e-5, atol=1e-5)
    # the scene is not trivial: some pixels are saturated, some empty, some in between
    assert (alphas > 0.99).any() and (alphas < 1e-6).any() and ((alphas > 0.2) & (alphas < 0.8)).any()


@pytest.mark.parametrize("rasterize_mode", ["classic", "antialiased"])
def test_packed_and_antialiased_match_reference(scene, rasterize_mode):
    s = scene(60, n_cams=3, seed=2)
    ref_colors, ref_alphas, _ = render_reference(**s, rasterize_mode=rasterize_mode, render_mode="RGB+ED")
    for packed in (True, False):
        colors, alphas, info = rasterization(*_inputs(s), rasterize_mode=rasterize_mode, packed=packed,
                                             render_mode="RGB+ED")
        torch.testing.assert_close(colors, ref_colors, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(alphas, ref_alphas, rtol=1e-5, atol=1e-5)
    assert info["gaussian_ids"] is None and info["radii"].shape == (3, 60, 2)


def test_float32_matches_float64(scene):
    s = scene(80, n_cams=2, sh_degree=3, seed=3)
    ref, ref_alpha, _ = rasterization(*_inputs(s), sh_degree=3, render_mode="RGB+D")
    s32 = {k: v.float() if torch.is_tensor(v) else v for k, v in s.items()}
    out, alpha, _ = rasterization(*_inputs(s32), sh_degree=3, render_mode="RGB+D")
    assert out.dtype == torch.float32
    torch.testing.assert_close(alpha, ref_alpha.float(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out, ref.float(), rtol=1e-4, atol=1e-4)


def test_image_not_multiple_of_tile_and_per_camera_colors(scene):
    s = scene(50, n_cams=2, width=37, height=21, seed=4)
    per_cam = torch.rand(2, 50, 5, dtype=torch.float64)  # [C, N, D] with D = 5 channels
    s_cam = dict(s, colors=per_cam)
    colors, alphas, info = rasterization(*_inputs(s_cam), tile_size=8)
    assert info["tile_width"] == 5 and info["tile_height"] == 3 and info["isect_offsets"].shape == (2, 3, 5)
    ref_colors = torch.stack([render_reference(**dict(s, colors=per_cam[c]))[0][c] for c in range(2)])
    torch.testing.assert_close(colors, ref_colors, rtol=1e-5, atol=1e-5)


def test_nothing_visible_renders_background(scene):
    s = scene(10, n_cams=1, degenerate=False)
    s["means"][:, 2] = -5.0  # all behind the camera
    bg = torch.tensor([[0.1, 0.2, 0.3]], dtype=torch.float64)
    colors, alphas, info = rasterization(*_inputs(s), backgrounds=bg)
    assert info["flatten_ids"].numel() == 0 and (alphas == 0).all()
    torch.testing.assert_close(colors, bg[:, None, None, :].expand(1, 32, 40, 3))
