"""Each depth loss is invariant to exactly what it claims, and to nothing more (values asserted)."""

import pytest
import torch

from s3dgs import alignment
from s3dgs.data.scene import View
from s3dgs.losses import depth_loss, fit_affine, photometric_loss, to_prior_space

H, W = 24, 32


@pytest.fixture
def scene():
    """A rendered z-depth, a prior (relative inverse depth, imperfect) and a mask."""
    g = torch.Generator().manual_seed(0)
    v, u = torch.meshgrid(torch.linspace(0, 1, H), torch.linspace(0, 1, W), indexing="ij")
    depth = 2 + 3 * v + 0.5 * torch.sin(6 * u)
    depth[8:14, 10:20] = 1.5  # an object in front
    true_disp = 1 / depth
    prior = 0.3 * (true_disp + 0.05 * torch.sin(3 * u + 1) + 0.01 * torch.randn(H, W, generator=g)) + 0.7
    render = depth * (1 + 0.1 * torch.randn(H, W, generator=g))  # imperfect render
    mask = torch.ones(H, W, dtype=torch.bool)
    mask[:3] = False
    return render, prior, mask


def _loss(name, depth, prior, mask, kind="inverse_depth", align=None):
    return float(depth_loss(name, to_prior_space(depth, kind), prior, mask, align))


@pytest.mark.parametrize("name", ["ssi", "pearson"])
def test_invariant_to_scene_scale_and_prior_scale_shift(scene, name):
    render, prior, mask = scene
    base = _loss(name, render, prior, mask)
    assert base > 1e-3
    assert _loss(name, 37.0 * render, prior, mask) == pytest.approx(base, rel=1e-4)  # COLMAP units
    assert _loss(name, render, 250.0 * prior - 3.0, mask) == pytest.approx(base, rel=1e-4)  # prior units
    assert _loss(name, 0.01 * render, 0.05 * prior + 2.0, mask) == pytest.approx(base, rel=1e-4)
    # ... but not to a non-affine change of the prior, nor to a different render
    assert abs(_loss(name, render, prior**3, mask) - base) > 1e-3 * base
    assert abs(_loss(name, render**1.5, prior, mask) - base) > 1e-3 * base


def test_ssi_is_zero_for_an_exact_affine_prior(scene):
    render, _, mask = scene
    prior = 4.0 / render - 0.2  # exact inverse depth up to scale and shift
    assert _loss("ssi", render, prior, mask) < 1e-5
    assert _loss("pearson", render, prior, mask) < 1e-6


def test_ssi_fits_the_render_to_the_prior_not_the_reverse(scene):
    """Flattening the rendered depth must not lower the loss (the pitfall in depth_loss_findings.md)."""
    render, prior, mask = scene
    flat = render.mean() + 0.05 * (render - render.mean())
    assert _loss("ssi", flat, prior, mask) > _loss("ssi", render, prior, mask) - 1e-6


def test_gradient_flows_to_the_render_only(scene):
    render, prior, mask = scene
    r = render.clone().requires_grad_(True)
    depth_loss("ssi", to_prior_space(r, "inverse_depth"), prior, mask).backward()
    assert r.grad is not None and r.grad[mask].abs().sum() > 0
    assert r.grad[~mask].abs().sum() == 0
    a, b = fit_affine(r, prior)
    assert not a.requires_grad and not b.requires_grad


@pytest.mark.parametrize("name", ["ssi", "pearson"])
def test_independent_of_image_size(scene, name):
    render, prior, mask = scene
    up = lambda t: t.repeat_interleave(2, 0).repeat_interleave(2, 1)  # noqa: E731
    assert _loss(name, up(render), up(prior), up(mask)) == pytest.approx(_loss(name, render, prior, mask), rel=1e-4)


def test_metric_l1_invariant_to_units_only(scene):
    render, _, mask = scene
    prior = 1.1 * render + 0.05  # a metric prior close to the render
    base = _loss("l1", render, prior, mask, "depth", (1.0, 0.0))
    assert base > 1e-3
    # the scene in other units, with the scene-to-metric factor that says so: same value
    assert _loss("l1", 10.0 * render, prior, mask, "depth", (0.1, 0.0)) == pytest.approx(base, rel=1e-5)
    # prior in millimetres and scene scaled alike: same value
    assert _loss("l1", 1000 * render, 1000 * prior, mask, "depth", (1.0, 0.0)) == pytest.approx(base, rel=1e-5)
    # a per-image scale or shift of a metric prior is real information: the value changes
    assert _loss("l1", render, 2 * prior, mask, "depth", (1.0, 0.0)) > 2 * base
    assert _loss("l1", render, prior + 1.0, mask, "depth", (1.0, 0.0)) > 2 * base


def _points_view(depth, prior, scale=1.0):
    """A camera at the origin looking down +z; the points are the depth map's surface."""
    K = torch.tensor([[30.0, 0, W / 2], [0, 30.0, H / 2], [0, 0, 1]])
    view = View("v.png", torch.zeros(H, W, 3), K, torch.eye(4), prior=prior, prior_valid=torch.ones(H, W, dtype=bool))
    v, u = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    sel = (slice(2, None, 3), slice(1, None, 3))
    z = depth[sel].reshape(-1) * scale
    pts = torch.stack([(u[sel].reshape(-1) - W / 2) / 30 * z, (v[sel].reshape(-1) - H / 2) / 30 * z, z], -1)
    return view, pts


def test_sparse_alignment_and_loss_invariant_to_scene_scale_and_prior_affine(scene):
    render, prior, mask = scene
    true_depth = 1 / ((prior - 0.7) / 0.3)  # the points agree with the prior up to its noise

    def loss(scene_scale, pa, pb):
        p = pa * prior + pb
        view, pts = _points_view(true_depth, p, scene_scale)
        (stem, align), = alignment.sparse_alignments([view], pts).items()
        return _loss("sparse", scene_scale * render, p, mask, align=align)
    base = loss(1.0, 1.0, 0.0)
    assert base > 1e-3
    assert loss(23.0, 1.0, 0.0) == pytest.approx(base, rel=1e-3)
    assert loss(1.0, 80.0, -5.0) == pytest.approx(base, rel=1e-3)
    # fixed to the points: a render whose scale drifts from the points costs more (ssi would not notice)
    view, pts = _points_view(true_depth, prior)
    (_, align), = alignment.sparse_alignments([view], pts).items()
    assert _loss("sparse", 2 * render, prior, mask, align=align) > 1.5 * base
    assert _loss("ssi", 2 * render, prior, mask) == pytest.approx(_loss("ssi", render, prior, mask), rel=1e-4)


def test_median_mad_fit_recovers_an_affine_map():
    x = torch.linspace(0, 1, 50)
    assert alignment.median_mad_fit(x, 3 * x + 2) == pytest.approx((3.0, 2.0), rel=1e-5)
    assert alignment.median_mad_fit(x[:10], 3 * x[:10]) is None  # too few points


def test_photometric_loss_masks_and_weights():
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(1, 16, 16, 3, generator=g)
    img = gt.clone()
    img[:, :8] = 1 - img[:, :8]
    mask = torch.zeros(1, 16, 16, dtype=torch.bool)
    mask[:, 8:] = True
    assert float(photometric_loss(img, gt, mask)) == pytest.approx(0.0, abs=1e-6)
    l1 = float((img - gt).abs().mean())
    assert float(photometric_loss(img, gt, None, ssim_lambda=0.0)) == pytest.approx(l1, rel=1e-6)
