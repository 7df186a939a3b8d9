"""Forward parity of our projection and tile binning with gsplat's pure-PyTorch reference."""

import pytest
import torch
from gsplat.cuda._torch_impl import (_fully_fused_projection, _isect_offset_encode, _isect_tiles,
                                     _quat_scale_to_covar_preci)

from s3dgs.render.projection import project_gaussians, quat_scale_to_covar
from s3dgs.render.tiles import intersect_tiles, n_tiles


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("antialiased", [False, True])
def test_projection_matches_gsplat_torch(scene, dtype, antialiased):
    s = scene(300, n_cams=3, dtype=dtype, width=64, height=48)
    covars = quat_scale_to_covar(s["quats"], s["scales"])
    ref_covars, _ = _quat_scale_to_covar_preci(s["quats"], s["scales"], compute_preci=False)
    torch.testing.assert_close(covars, ref_covars, rtol=1e-5, atol=1e-7)

    radii, means2d, depths, conics, comp = project_gaussians(
        s["means"], s["viewmats"], s["Ks"], 64, 48, quats=s["quats"], scales=s["scales"],
        calc_compensations=antialiased)
    ref_radii, ref_means2d, ref_depths, ref_conics, ref_comp = _fully_fused_projection(
        s["means"], ref_covars, s["viewmats"], s["Ks"], 64, 48, calc_compensations=antialiased)

    assert radii.dtype == torch.int32 and radii.shape == (3, 300, 2)
    torch.testing.assert_close(radii, ref_radii, rtol=0, atol=0)
    vis = (radii > 0).all(-1)
    assert 100 < vis.sum() < 900 and (~vis).any()  # the scene exercises both kept and culled Gaussians
    torch.testing.assert_close(depths, ref_depths, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(means2d[vis], ref_means2d[vis], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conics[vis], ref_conics[vis], rtol=1e-5, atol=1e-5)
    if antialiased:
        # sqrt(det(cov) / det(cov + eps2d)) of near-singular covariances cancels badly in float32 (both codes)
        tol = 1e-5 if dtype == torch.float64 else 2e-3
        torch.testing.assert_close(comp[vis], ref_comp[vis], rtol=tol, atol=tol)
    else:
        assert comp is None


def test_opacity_aware_radii_like_gsplat_cuda(scene):
    """With opacities (as gsplat's CUDA rasterization passes them), the box shrinks to where alpha >= 1/255 and
    Gaussians below 1/255 are culled."""
    s = scene(200, n_cams=1)
    covars = quat_scale_to_covar(s["quats"], s["scales"])
    plain = project_gaussians(s["means"], s["viewmats"], s["Ks"], 40, 32, covars=covars)[0]
    aware, means2d, _, conics, _ = project_gaussians(s["means"], s["viewmats"], s["Ks"], 40, 32, covars=covars,
                                                     opacities=s["opacities"])
    assert (aware <= plain).all() and (aware < plain).any()
    assert (aware[0, -4] == 0).all() and (plain[0, -4] > 0).all()  # opacity 0.001 < 1/255
    # every pixel centre with alpha >= 1/255 still lies inside the shrunken box
    vis = (aware[0] > 0).all(-1)
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(40.0), indexing="ij")
    for g in torch.nonzero(vis)[:, 0].tolist():
        dx, dy = means2d[0, g, 0] - xs - 0.5, means2d[0, g, 1] - ys - 0.5
        a, b, c = conics[0, g]
        alpha = s["opacities"][g] * torch.exp(-(0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy))
        hit = alpha >= 1 / 255
        assert (dx[hit].abs() <= aware[0, g, 0]).all() and (dy[hit].abs() <= aware[0, g, 1]).all()


def test_tile_intersections_match_gsplat_torch(scene):
    s = scene(300, n_cams=2, dtype=torch.float32, width=64, height=48)
    radii, means2d, depths, _, _ = project_gaussians(s["means"], s["viewmats"], s["Ks"], 64, 48, quats=s["quats"],
                                                     scales=s["scales"])
    tile_w, tile_h = n_tiles(64, 48, 16)
    assert (tile_w, tile_h) == (4, 3)
    ref_tpg, ref_isect_ids, ref_flatten_ids = _isect_tiles(means2d, radii, depths, 16, tile_w, tile_h)
    ref_offsets = _isect_offset_encode(ref_isect_ids, 2, tile_w, tile_h)

    image_ids = torch.arange(2).repeat_interleave(300)
    tpg, isect_ids, flatten_ids, offsets = intersect_tiles(
        means2d.reshape(-1, 2), radii.reshape(-1, 2), depths.reshape(-1), image_ids, 2, 16, tile_w, tile_h)
    assert len(isect_ids) > 500
    torch.testing.assert_close(tpg.reshape(2, 300), ref_tpg, rtol=0, atol=0)
    torch.testing.assert_close(isect_ids, ref_isect_ids, rtol=0, atol=0)
    torch.testing.assert_close(flatten_ids, ref_flatten_ids, rtol=0, atol=0)
    torch.testing.assert_close(offsets, ref_offsets, rtol=0, atol=0)


def test_no_visible_gaussians_gives_empty_intersections():
    means2d = torch.zeros(5, 2)
    radii = torch.zeros(5, 2, dtype=torch.int32)
    tpg, isect_ids, flatten_ids, offsets = intersect_tiles(means2d, radii, torch.ones(5), torch.zeros(5).long(),
                                                           1, 16, 2, 2)
    assert isect_ids.numel() == 0 and flatten_ids.numel() == 0
    assert (tpg == 0).all() and (offsets == 0).all() and offsets.shape == (1, 2, 2)
