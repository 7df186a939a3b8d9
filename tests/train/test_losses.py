"""Each depth loss (s3dgs.depth_terms) is invariant to exactly what it claims, and to nothing more (values
asserted)."""

import pytest
import torch
from omegaconf import OmegaConf

from s3dgs import alignment
from s3dgs.data.scene import View
from s3dgs.depth_terms import make_depth_term
from s3dgs.depth_terms.anchored import anchored_loss, geman_mcclure
from s3dgs.depth_terms.base import DepthTerm
from s3dgs.errors import TrainError
from s3dgs.losses import fit_affine, photometric_loss, to_prior_space

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


def _term(name: str, align=None, **cfg) -> DepthTerm:
    """The depth term ``name`` as the config chooses it, its view ``v`` aligned by ``align`` (``l1``: ``(k, 0)``,
    the scene-to-metric factor; the others: ``(scale, offset)``) as if prepared."""
    term = make_depth_term(OmegaConf.create({"name": name, "robust_c": 0.25, "grad_weight": 0.5} | cfg))
    if align is not None and name == "l1":
        term.scene_to_metric = align[0]
    elif align is not None:
        term.fits = {"v": align}
    return term


VIEW = View("v.png", "v", torch.zeros(H, W, 3), torch.eye(3), torch.eye(4))


def _depth_loss(name, r, prior, mask, align=None, weight=None, **cfg):
    """The term's loss of the render ``r`` (in the prior's space) on the view ``v``."""
    return _term(name, align, **cfg).loss(VIEW, r, prior, mask, weight)


def _loss(name, depth, prior, mask, kind="inverse_depth", align=None):
    return float(_depth_loss(name, to_prior_space(depth, kind), prior, mask, align))


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
    _depth_loss("ssi", to_prior_space(r, "inverse_depth"), prior, mask).backward()
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


def _points_view(depth, prior, scale=1.0, every=3):
    """A camera at the origin looking down +z; the points are the depth map's surface (every ``every``-th pixel)."""
    K = torch.tensor([[30.0, 0, W / 2], [0, 30.0, H / 2], [0, 0, 1]])
    view = View("v.png", "v", torch.zeros(H, W, 3), K, torch.eye(4), prior=prior, prior_valid=torch.ones(H, W, dtype=bool))
    v, u = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    sel = (slice(every - 1, None, every), slice(every // 2, None, every))
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


def test_robust_fit_recovers_an_affine_map_with_30_percent_outliers():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(200, generator=g)
    y = 3 * x + 2 + 0.005 * torch.randn(200, generator=g)
    bad = torch.randperm(200, generator=g)[:60]  # 30% of the points anywhere in the range
    y[bad] = 2 + 3 * torch.rand(60, generator=g)
    a, b, inliers = alignment.ransac_affine(x, y, torch.Generator().manual_seed(0))
    assert (a, b) == pytest.approx((3.0, 2.0), rel=0.01)
    assert 0.65 < float(inliers.float().mean()) < 0.8
    la, lb = fit_affine(x, y, positive=False)  # plain least squares is dragged away
    assert abs(float(la) - 3) > 0.3
    # deterministic given the seed; unreliable with most points outliers, too few points, or an inverted prior
    assert alignment.anchored_fit(x, y, torch.Generator().manual_seed(0))[:2] == pytest.approx((a, b), rel=1e-9)
    y[torch.randperm(200, generator=g)[:140]] = 2 + 3 * torch.rand(140, generator=g)
    assert "inliers" in alignment.anchored_fit(x, y, torch.Generator().manual_seed(0))
    assert "fewer than 10" in alignment.anchored_fit(x[:9], 3 * x[:9], torch.Generator())
    assert isinstance(alignment.anchored_fit(x, 2 - 3 * x, torch.Generator()), str)


def _anchored(render, prior, mask, pts_depth, scene_scale=1.0, **kw):
    """Anchored loss of a render (z-depth) and an inverse-depth prior, the fit made to points on ``pts_depth``."""
    view, pts = _points_view(pts_depth, prior, scene_scale)
    fits, failed = alignment.anchored_alignments([view], pts, "inverse_depth")
    assert not failed
    return float(_depth_loss("anchored", to_prior_space(render, "inverse_depth"), prior, mask, fits["v"], **kw))


def test_anchored_invariant_to_scene_scale_and_prior_affine_through_the_fit(scene):
    render, prior, mask = scene
    true_depth = 1 / ((prior - 0.7) / 0.3)
    base = _anchored(render, prior, mask, true_depth)
    assert base > 1e-3
    assert _anchored(23.0 * render, prior, mask, true_depth, 23.0) == pytest.approx(base, rel=1e-3)
    assert _anchored(render, 80.0 * prior - 5.0, mask, true_depth) == pytest.approx(base, rel=1e-3)
    assert _anchored(0.1 * render, 0.05 * prior + 2, mask, true_depth, 0.1) == pytest.approx(base, rel=1e-3)
    # anchored to the points: a render whose scale drifts from them costs more (ssi would not notice)
    assert _anchored(2 * render, prior, mask, true_depth) > 1.25 * base  # bounded: the 10% noisy render is near the cap
    # ... but a render exactly on the aligned prior costs nothing
    assert _anchored(true_depth, prior, mask, true_depth) < 1e-6


def test_anchored_fit_ignores_outlying_points(scene):
    render, prior, mask = scene
    true_depth = 1 / ((prior - 0.7) / 0.3)
    view, pts = _points_view(true_depth, prior)
    g = torch.Generator().manual_seed(0)
    bad = torch.randperm(len(pts), generator=g)[: int(0.3 * len(pts))]
    pts[bad] *= 0.3 + 1.4 * torch.rand(len(bad), 1, generator=g)  # 30% of the points off along their rays
    fits, _ = alignment.anchored_alignments([view], pts, "inverse_depth")
    # the fit recovers the prior's true map onto inverse depth, 1/z = (p - 0.7) / 0.3
    assert fits["v"] == pytest.approx((1 / 0.3, -0.7 / 0.3), rel=0.02)


def test_scale_field_recovers_a_smooth_warp_with_30_percent_outliers():
    """A prior off by a smooth multiplicative warp (as monocular models are): one scale cannot remove it, the
    scale field fitted to the points does, despite 30% outlying points."""
    h, w, g = 48, 64, torch.Generator().manual_seed(3)
    v, u = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    true_scale = 2 * (1 + 0.12 * torch.sin(2 * torch.pi * (0.6 * u / w + 0.3 * v / h) + 1))
    prior = 1 + torch.rand(h, w, generator=g)
    target_map = true_scale * (prior + 0.25)  # the warp multiplies the (inverse) depth
    idx = torch.randperm(h * w, generator=g)[:600]
    uv = torch.stack([u.flatten()[idx], v.flatten()[idx]], 1)
    x, y = prior.flatten()[idx], target_map.flatten()[idx].clone()
    bad = torch.randperm(600, generator=g)[:180]
    y[bad] *= 0.5 + torch.rand(180, generator=g)
    a, b, inliers = alignment.ransac_affine(x, y, torch.Generator().manual_seed(0), threshold=1.0)
    nodes = alignment.field_nodes(400, 4, 25)
    field = alignment.scale_field_fit(x, y, uv, w, h, inliers, nodes, root=-b / a)
    scale, offset = field.maps(h, w)
    assert scale.shape == offset.shape == (h, w)
    field_err = ((scale * prior + offset - target_map).abs() / target_map).mean()
    affine_err = ((a * prior + b - target_map).abs() / target_map).mean()
    assert field_err < 0.015 < 0.04 < affine_err
    assert alignment.field_nodes(399, 4, 25) == 3 and alignment.field_nodes(99, 4, 25) == 1


def test_anchored_with_a_scale_field_keeps_the_invariances(scene):
    """With enough points each view's scale is a map; the loss stays invariant to the scene's scale and the
    prior's scale and shift (through the fit), and a render on the true surface costs less than with one scale."""
    render, prior, mask = scene
    true_depth = 1 / ((prior - 0.7) / 0.3 + 0.04 * torch.linspace(-1, 1, W))  # the prior is off by a smooth tilt

    def loss(depth, p, scene_scale=1.0, nodes=4):
        view, pts = _points_view(true_depth, p, scene_scale, every=1)
        fits, failed = alignment.anchored_alignments([view], pts, "inverse_depth", max_nodes=nodes)
        assert not failed and isinstance(fits["v"], alignment.ScaleField) == (nodes > 1)
        align = alignment.alignment_maps(fits["v"], H, W)
        return float(_depth_loss("anchored", to_prior_space(depth, "inverse_depth"), p, mask, align))
    base = loss(render, prior)
    assert base > 1e-3
    assert loss(23.0 * render, prior, 23.0) == pytest.approx(base, rel=1e-3)
    assert loss(render, 80.0 * prior - 5.0) == pytest.approx(base, rel=1e-3)
    assert loss(true_depth, prior) < 0.3 * loss(true_depth, prior, nodes=1)


def test_anchored_is_bounded_per_pixel(scene):
    """Geman-McClure: a region where the render is wildly off costs at most its share of the pixels."""
    render, prior, mask = scene
    align = (1 / 0.3, -0.7 / 0.3)
    r = to_prior_space(render, "inverse_depth")
    base = float(anchored_loss(r, prior, mask, *align, grad_weight=0.0))
    far = r.clone()
    far[12:18] *= 100.0  # a quarter of the image 100x off
    share = float(mask[12:18].sum() / mask.sum())
    assert base < float(anchored_loss(far, prior, mask, *align, grad_weight=0.0)) <= base + share + 1e-6


def test_anchored_ignores_residuals_below_half_a_quantisation_step():
    v, u = torch.meshgrid(torch.linspace(0, 1, H, dtype=torch.float64), torch.linspace(0, 1, W, dtype=torch.float64),
                          indexing="ij")
    step = 1 / 65535
    prior = torch.round((0.3 + 0.4 * v + 0.1 * u) / step) * step  # a smooth ramp, 16-bit staircase
    mask = torch.ones(H, W, dtype=torch.bool)
    scale, offset = 2.0, 0.5
    wobble = torch.sin(7 * u + 3 * v)  # in [-1, 1], neighbours differ by less than 0.4
    for k, zero in ((0.4, True), (0.7, False)):
        r = scale * (prior + k * step * wobble) + offset  # rendered disparity within k steps of the aligned prior
        loss = float(anchored_loss(r, prior, mask, scale, offset, quant_step=step))
        assert (loss == 0.0) == zero
        assert float(anchored_loss(r, prior, mask, scale, offset, quant_step=0.0)) > 0


def test_anchored_gradient_reaches_the_render_only(scene):
    render, prior, mask = scene
    r = render.clone().requires_grad_(True)
    loss = _depth_loss("anchored", to_prior_space(r, "inverse_depth"), prior, mask, (1 / 0.3, -0.7 / 0.3))
    loss.backward()
    assert torch.isfinite(r.grad).all() and r.grad[mask].abs().sum() > 0 and r.grad[~mask].abs().sum() == 0
    # without a fit the view falls back to ssi
    assert float(_depth_loss("anchored", to_prior_space(render, "inverse_depth"), prior, mask)) == pytest.approx(
        _loss("ssi", render, prior, mask))


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


@pytest.mark.parametrize("name", ["anchored", "ssi", "sparse", "l1", "pearson"])
def test_confidence_weights_each_pixel(name):
    """A confidence map multiplies each pixel's term: ones change nothing, a uniform 0.5 halves the loss (pearson:
    a uniform weight changes nothing), and zero confidence where the render is wrong removes that error."""
    gen = torch.Generator().manual_seed(0)
    p = 1 + torch.rand(30, 40, generator=gen)
    align = {"anchored": (2.0, -0.2), "sparse": (2.0, -0.2), "l1": (1.0, 0.0)}.get(name, (0.5, 0.1))
    r = align[0] * p + align[1]  # the prior, aligned: exact ...
    r[:, 20:] += torch.rand(30, 20, generator=gen)  # ... except on the right half
    mask = torch.ones(30, 40, dtype=torch.bool)
    plain = _depth_loss(name, r, p, mask, align)
    assert float(_depth_loss(name, r, p, mask, align, weight=torch.ones(30, 40))) == pytest.approx(float(plain))
    half = _depth_loss(name, r, p, mask, align, weight=torch.full((30, 40), 0.5))
    assert float(half) == pytest.approx(float(plain) * (1.0 if name == "pearson" else 0.5), rel=1e-5)
    left = torch.zeros(30, 40)
    left[:, :20] = 1
    assert float(_depth_loss(name, r, p, mask, align, weight=left)) < 0.5 * float(plain)


@pytest.mark.parametrize("name", ["ssi", "pearson", "anchored"])  # anchored without a fit is ssi
@pytest.mark.parametrize("noise", [0.0, 1e-6])
def test_a_flat_render_gives_a_finite_loss_a_bounded_gradient_and_still_learns_the_priors_shape(scene, name, noise):
    """A render at one depth over the mask (or within float noise of it): the fit cannot stretch it without bound
    (the gradient was 1e8 and more), and descending the gradient still moves it towards the prior's shape."""
    _, prior, mask = scene
    r = (1 / 3.0 + noise * torch.randn(H, W, generator=torch.Generator().manual_seed(1))).requires_grad_(True)
    loss = _depth_loss(name, r, prior, mask)
    loss.backward()
    assert 0.3 < loss.item() < 2 and r.grad.abs().max() < 1e3
    down = -r.grad[mask]
    assert torch.corrcoef(torch.stack([down, prior[mask]]))[0, 1] > 0.5


@pytest.mark.parametrize("name", ["sparse", "anchored"])
def test_a_flat_prior_over_the_mask_measures_residuals_relative_to_its_level(scene, name):
    """Where the prior is flat over the mask its spread is no unit (the loss was 1e11): residuals are measured
    in 1% of the aligned prior's level instead, so ``sparse`` is the mean relative error / 1%."""
    render, prior, mask = scene
    prior = torch.where(mask, torch.tensor(0.8), prior)  # flat over the mask, not elsewhere
    scale, offset = 0.5, -0.1  # aligned prior: disparity 0.3 over the mask
    r = to_prior_space(render, "inverse_depth").requires_grad_(True)
    loss = _depth_loss(name, r, prior, mask, (scale, offset))
    loss.backward()
    assert r.grad.abs().max() < 1e3
    units = (r.detach()[mask] - 0.3).abs() / 0.3 / 0.01  # relative error in 1% steps
    if name == "sparse":
        assert loss.item() == pytest.approx(float(units.mean()), rel=1e-4)
    else:
        value = anchored_loss(r.detach(), prior, mask, scale, offset, grad_weight=0.0)
        assert float(value) == pytest.approx(float(geman_mcclure(units, 0.25).mean()), rel=1e-4)


def test_the_config_chooses_the_term_and_a_wrong_choice_names_the_valid_ones():
    assert type(_term("anchored")).__name__ == "AnchoredTerm" and type(_term("l1")).__name__ == "L1Term"
    with pytest.raises(TrainError, match="depth_loss.name='ssl': use anchored, l1, pearson, sparse or ssi"):
        _term("ssl")
    with pytest.raises(TrainError, match="depth_loss.alignment=per_sequence aligns priors to the sparse points"):
        _term("ssi", alignment="per_sequence")
    assert _term("anchored", alignment="per_sequence").pooled


def test_too_few_pixels_or_no_fit_give_no_loss(scene):
    render, prior, _ = scene
    few = torch.zeros(H, W, dtype=torch.bool)
    few[0, :15] = True
    r = to_prior_space(render, "inverse_depth")
    assert all(_depth_loss(n, r, prior, few, (1.0, 0.0)) is None for n in ("anchored", "ssi", "pearson", "sparse", "l1"))
    assert _depth_loss("sparse", r, prior, torch.ones(H, W, dtype=torch.bool)) is None  # a view without a fit
