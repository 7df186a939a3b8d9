"""Initialisation (KD-tree scales, the random-init box) and the densification strategies on CPU."""

import json
import math

import numpy as np
import pytest
import torch

from s3dgs import alignment
from s3dgs.densification import DefaultDensification, Densification, MCMCDensification
from s3dgs.init import knn_rms_distance, random_init_box
from s3dgs.render import rasterization
from s3dgs.strategy import BudgetDefaultStrategy, CPUMCMCStrategy, relocation_torch


def test_knn_rms_distance_matches_brute_force():
    pts = torch.rand(500, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * torch.tensor([4, 1, 2])
    d = torch.cdist(pts, pts)
    nearest = d.topk(4, largest=False).values[:, 1:]
    expected = nearest.pow(2).mean(-1).sqrt()
    assert torch.allclose(knn_rms_distance(pts), expected, rtol=1e-9)
    grid = torch.stack(torch.meshgrid(*[torch.arange(5.0) * 0.2] * 3, indexing="ij"), -1).reshape(-1, 3)
    assert knn_rms_distance(grid)[62].item() == pytest.approx(0.2)  # an inner point: 6 neighbours at 0.2


def _look_at(eye, target):
    fwd = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(fwd, [0, 0, 1.0])
    right /= np.linalg.norm(right)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([right, np.cross(fwd, right), fwd], 1)
    c2w[:3, 3] = eye
    return c2w


def test_random_init_box_for_inward_and_forward_facing_cameras():
    target = np.array([0.5, -0.2, 0.3])
    f, w, h = 100.0, 200, 100
    ring = [_look_at(target + 4 * np.array([math.cos(a), math.sin(a), 0.5]), target) for a in np.linspace(0, 6, 12)]
    K = torch.tensor([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], dtype=torch.float32).expand(12, 3, 3)
    sizes = torch.tensor([[w, h]] * 12)
    centre, half = random_init_box(torch.tensor(np.stack(ring), dtype=torch.float32), K, sizes, extent=9.0)
    assert np.allclose(centre.numpy(), target, atol=1e-4)
    assert half == pytest.approx(4 * math.sqrt(1.25) * (w / 2) / f, rel=1e-4)  # distance x tan(half fov)
    forward = [_look_at(np.array([x, 0.0, 0.0]), np.array([x, 10.0, 0.0])) for x in np.linspace(-1, 1, 5)]
    centre, half = random_init_box(torch.tensor(np.stack(forward), dtype=torch.float32), K[:5], sizes[:5], extent=9.0)
    assert np.allclose(centre.numpy(), 0, atol=1e-6) and half == 9.0  # axes never meet: the scene scale


def _relocation_loops(o: float, s: float, n: int) -> tuple[float, float]:
    """gsplat's CUDA relocation kernel, written out as its loops."""
    new_o = 1 - (1 - o) ** (1 / n)
    denom = sum(math.comb(i - 1, k) * (-1) ** k / math.sqrt(k + 1) * new_o ** (k + 1)
                for i in range(1, n + 1) for k in range(i))
    return new_o, o / denom * s


def test_relocation_formula_matches_the_kernel_loops():
    binoms = torch.tensor([[math.comb(n, k) for k in range(51)] for n in range(51)], dtype=torch.float32)
    o = torch.tensor([0.9, 0.5, 0.05, 0.3, 0.7])
    s = torch.rand(5, 3) + 0.1
    n = torch.tensor([1, 2, 3, 10, 40])
    new_o, new_s = relocation_torch(o, s, n, binoms)
    assert torch.allclose(new_o[0], o[0]) and torch.allclose(new_s[0], s[0])  # one copy: unchanged
    for i in range(5):
        eo, es = _relocation_loops(float(o[i]), 1.0, int(n[i]))
        assert float(new_o[i]) == pytest.approx(eo, rel=1e-5)
        assert torch.allclose(new_s[i], es * s[i], rtol=1e-4)
        assert 1 - (1 - float(new_o[i])) ** int(n[i]) == pytest.approx(float(o[i]), rel=1e-5)  # copies stack to o


def _params(n, gen):
    return torch.nn.ParameterDict({
        "means": torch.nn.Parameter(torch.randn(n, 3, generator=gen) * 0.3),
        "scales": torch.nn.Parameter(torch.full((n, 3), -2.5)),
        "quats": torch.nn.Parameter(torch.rand(n, 4, generator=gen)),
        "opacities": torch.nn.Parameter(torch.logit(torch.rand(n, generator=gen) * 0.8 + 0.1)),
        "colors": torch.nn.Parameter(torch.rand(n, 3, generator=gen))})


def _fit(densify: Densification, params, steps, target, viewmat, K, means_lr: float = 0.0):
    """Fit ``params`` to ``target`` for ``steps`` steps, densifying as the trainer does; the count after each step."""
    optimizers = {k: torch.optim.Adam([p], lr=1e-2) for k, p in params.items()}
    state = densify.initial_state(params, optimizers, 1.0)
    counts = []
    for step in range(steps):
        img, _, info = rasterization(params["means"], params["quats"], torch.exp(params["scales"]),
                                     torch.sigmoid(params["opacities"]), params["colors"], viewmat, K, 48, 40,
                                     packed=False)
        densify.before_backward(params, optimizers, state, step, info)
        (img - target).abs().mean().backward()
        densify.after_backward(params, optimizers, state, step, info, means_lr, packed=False)
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        counts.append(len(params["means"]))
    return counts


def _camera():
    viewmat = torch.eye(4)[None]
    viewmat[0, 2, 3] = 3.0
    K = torch.tensor([[[40.0, 0, 24], [0, 40.0, 20], [0, 0, 1]]])
    target = torch.rand(1, 40, 48, 3, generator=torch.Generator().manual_seed(1))  # detail everywhere
    return target, viewmat, K


def test_default_strategy_resets_opacity_on_schedule_and_keeps_the_budget():
    target, viewmat, K = _camera()
    params = _params(60, torch.Generator().manual_seed(0))
    strategy = BudgetDefaultStrategy(cap_max=150, refine_start_iter=2, refine_every=5, reset_every=20,
                                     refine_stop_iter=100, grow_grad2d=1e-7, prune_opa=0.005)
    counts = _fit(DefaultDensification(strategy), params, 21, target, viewmat, K)
    assert max(counts) == 150 and counts[-1] == 150  # grew, then held at the budget
    assert torch.sigmoid(params["opacities"]).max().item() <= 0.01 + 1e-6  # step 20: reset to 2 x prune_opa


def test_mcmc_on_cpu_grows_from_a_too_sparse_start_to_its_cap():
    target, viewmat, K = _camera()
    params = _params(20, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    strategy = CPUMCMCStrategy(cap_max=40, refine_start_iter=1, refine_every=2, refine_stop_iter=100)
    counts = _fit(MCMCDensification(strategy), params, 60, target, viewmat, K, means_lr=1e-3)
    assert counts[0] == 20 and counts[-1] == 40
    assert all(torch.isfinite(p).all() for p in params.values())


def test_trainer_grows_a_too_sparse_start_into_a_scene(run_train, tmp_path):
    """60 SfM points for a whole room: the default (MCMC) strategy must grow them, within its budget, into
    something that renders the held-out views."""
    from s3dgs.example import write_example
    write_example(tmp_path / "sparse", num_points=60)
    run = tmp_path / "run"
    run_train(f"data_dir={tmp_path / 'sparse'}", "steps=400", "lambda_depth=0", "init.from_priors=false",
              "save_renders=false", f"hydra.run.dir={run}")
    m = json.loads((run / "metrics.json").read_text())
    assert 60 * 3 < m["num_gaussians"] <= 21 * 80 * 60 // 16  # grew, and no more than the pixel budget
    assert m["test"]["psnr"] > 17


def test_backprojected_exact_depth_lies_on_the_true_surface(example_dir):
    """Points back-projected from one view's exact depth land where the other views see that surface."""
    from s3dgs.data.scene import load_scene
    from s3dgs.init import backproject
    scene = load_scene(example_dir)
    v, other = scene.train[0], scene.train[1]
    pts, rgb = backproject(v.gt_depth, v.gt_depth > 0, v.image, v.K, v.camtoworld, 500, torch.Generator().manual_seed(0))
    assert len(pts) == 500 and rgb.shape == (500, 3)
    w2c = torch.linalg.inv(other.camtoworld)
    cam = pts @ w2c[:3, :3].T + w2c[:3, 3]
    uv = cam[:, :2] / cam[:, 2:] * torch.stack([other.K[0, 0], other.K[1, 1]]) + other.K[:2, 2]
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < other.width) & (uv[:, 1] >= 0) & (uv[:, 1] < other.height)
    px = uv[inside].long()
    seen = other.gt_depth[px[:, 1], px[:, 0]]
    rel = (cam[inside, 2] - seen).abs() / seen
    assert inside.sum() > 100
    assert (rel < 0.05).float().mean() > 0.85  # on the surface the other view sees (the rest: occluded there)


def test_backprojection_snaps_the_blurred_edge_onto_the_two_surfaces():
    """A prior blurs a depth step (1 -> 3) over a few pixels: no point may land in the gap ("flying pixels"), and
    the blurred band's pixels next to either surface still give points, on that surface (silhouettes keep their
    points)."""
    from s3dgs.init import backproject
    depth = torch.ones(40, 60)
    depth[:, 30:] = 3.0
    blurred = torch.nn.functional.avg_pool2d(depth[None, None], 5, stride=1, padding=2, count_include_pad=False)[0, 0]
    K = torch.tensor([[50.0, 0, 30], [0, 50.0, 20], [0, 0, 1]])
    pts, _ = backproject(blurred, torch.ones(40, 60, dtype=torch.bool), torch.rand(40, 60, 3), K, torch.eye(4),
                         10_000, torch.Generator().manual_seed(0))
    z = pts[:, 2]
    assert len(z) > 1500 and ((z > 1.05) & (z < 2.95)).sum() == 0
    assert (z < 1.05).sum() > 500 and (z > 2.95).sum() > 500
    column = (pts[:, 0] / z * K[0, 0] + K[0, 2] - 0.5).round()
    assert ((column == 28) & (z < 1.05)).sum() >= 30  # blurred (5/3 of the way) yet snapped onto the near surface
    assert ((column == 31) & (z > 2.95)).sum() >= 30  # and onto the far one


def test_snap_to_surfaces_leaves_the_middle_of_a_wide_ramp_out():
    """Pixels between two surfaces take the depth of the nearest-in-depth neighbour on a surface; a pixel with no
    such neighbour (inside a ramp wider than a pixel on each side) becomes NaN; the others keep their depth."""
    from s3dgs.init import snap_to_surfaces
    depth = torch.ones(6, 20)
    depth[:, 7:13] = torch.linspace(1.25, 2.75, 6)  # a 6 px ramp from 1 to 3
    depth[:, 13:] = 3.0
    snapped = snap_to_surfaces(depth, 0.05)
    row = snapped[0]
    assert torch.equal(snapped[:, :6], depth[:, :6]) and torch.equal(snapped[:, 14:], depth[:, 14:])
    assert row[:7].eq(1.0).all() and row[13:].eq(3.0).all()  # both sides of the ramp land on their surface
    assert row[8:12].isnan().all()  # no surface next to them: left out, not put in between
    assert not ((row > 1.0) & (row < 3.0)).any()


def test_random_init_is_carved_to_the_silhouettes_of_rgba_views():
    """Two orthogonal cameras whose alpha is opaque only in a central square (0.5 units wide at the origin,
    0.375-0.625 at the box's near and far faces): every kept point projects inside both squares."""
    from s3dgs.data.scene import View
    from s3dgs.init import carved_random_points, inside_silhouettes
    K = torch.tensor([[40.0, 0, 20], [0, 40.0, 20], [0, 0, 1]])
    alpha = torch.zeros(40, 40)
    alpha[15:25, 15:25] = 1.0  # a square of half-width 5 px = 0.5 units at distance 4
    views = []
    for eye in (np.array([0, -4.0, 0]), np.array([4.0, 0, 0])):
        c2w = torch.tensor(_look_at(eye, np.zeros(3)), dtype=torch.float32)
        views.append(View("v", "v", torch.zeros(40, 40, 3), K, c2w, alpha=alpha))
    pts, rgb = carved_random_points(torch.zeros(3), 1.0, 300, views, torch.Generator().manual_seed(0))
    assert len(pts) == 300 and rgb.shape == (300, 3)
    assert inside_silhouettes(pts, views).all() and pts[:, :2].abs().max() < 0.65
    assert pts[:, 2].abs().max() < 0.65 and pts.abs().max(0).values.min() > 0.3  # fills the carved box
    opaque = [View("o", "o", torch.zeros(40, 40, 3), K, views[0].camtoworld)]  # no alpha: nothing to carve
    assert carved_random_points(torch.zeros(3), 1.0, 50, opaque, torch.Generator())[0].abs().max() > 0.8


def test_prior_points_stay_within_the_devices_cap(example_dir):
    """The prior adds init.prior_points per training view, fewer when the total would pass max_points."""
    from omegaconf import OmegaConf

    from s3dgs.data.scene import load_scene
    from s3dgs.init import initial_points
    scene = load_scene(example_dir, depth_dir=example_dir / "depth")
    cfg = OmegaConf.create({"scale": 1.0, "random_scale": 0.1, "num_random": 0, "random_extent": 1.0,
                            "from_priors": "auto", "prior_points": 200})
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    sfm, n_views = len(scene.points), len(scene.train)
    fits = alignment.anchored_alignments(scene.train, scene.points, scene.prior_kind)[0]
    full = initial_points(scene, cfg, scene.extent(), gen(), fits)[0]
    assert len(full) == sfm + 200 * n_views
    capped = initial_points(scene, cfg, scene.extent(), gen(), fits, max_points=sfm + 50 * n_views)[0]
    assert len(capped) == sfm + 50 * n_views
    assert torch.equal(capped[:sfm], scene.points)  # the measured points are all kept
    assert len(initial_points(scene, cfg, scene.extent(), gen(), fits, max_points=sfm // 2)[0]) == sfm // 2
    some = dict(list(fits.items())[:5])  # only the views given a fit (the trusted ones) add points
    assert len(initial_points(scene, cfg, scene.extent(), gen(), some)[0]) == sfm + 200 * 5


def test_a_start_over_the_budget_is_downsampled_keeping_coverage(caplog):
    """30k sparse points in a dense blob plus 64 clusters of 3 isolated points, one at the centre of each cell of a
    coarse 4x4x4 grid: capped at 2000 the start keeps 2000 of them (with their colours), the same bounding box and
    a point in every cell (a random cut keeping 6.6% would leave most clusters empty)."""
    from omegaconf import OmegaConf

    from s3dgs.data.scene import Scene
    from s3dgs.init import initial_points
    caplog.set_level("INFO", logger="s3dgs.init")
    gen = torch.Generator().manual_seed(0)
    centres = torch.stack(torch.meshgrid(*[torch.arange(4.0) - 1.5] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    clusters = (centres + 0.01 * torch.randn(64, 3, 3, generator=gen)).reshape(-1, 3)
    pts = torch.cat([0.1 * torch.randn(30000, 3, generator=gen), clusters])
    scene = Scene([], [], pts, torch.sigmoid(pts), "colmap")
    cfg = OmegaConf.create({"scale": 1.0, "from_priors": "auto"})
    kept, rgb, factor = initial_points(scene, cfg, 1.0, gen, {}, max_points=2000)
    assert len(kept) == len(rgb) == len(factor) == 2000
    assert torch.equal(rgb, torch.sigmoid(kept)) and factor.eq(1.0).all()
    assert torch.allclose(kept.amin(0), pts.amin(0), atol=0.03) and torch.allclose(kept.amax(0), pts.amax(0), atol=0.03)
    cells = lambda p: set(map(tuple, (p + 2).floor().long().tolist()))  # noqa: E731
    assert cells(kept) == cells(pts) and len(cells(pts)) == 64
    assert f"init: {len(pts) - 2000} of {len(pts)} starting points dropped" in caplog.text
    assert torch.equal(initial_points(scene, cfg, 1.0, gen, {}, max_points=len(pts))[0], pts)  # within: all kept


def test_prior_points_stay_within_the_depths_the_sparse_points_span():
    """A view whose sparse points all lie on a near object (depth 2-2.4) learns nothing from them about the
    background far behind it (depth 8): its prior adds points on the object only, none in the background."""
    from s3dgs.data.scene import Scene, View
    from s3dgs.init import prior_points
    K = torch.tensor([[40.0, 0, 20], [0, 40.0, 20], [0, 0, 1]])
    depth = torch.full((40, 40), 8.0)
    depth[10:30, 10:30] = torch.linspace(2.0, 2.4, 20)[None, :]  # a slanted object in front of a wall
    v = torch.arange(40.0)[:, None].expand(40, 40)
    u = torch.arange(40.0)[None, :].expand(40, 40)
    on_object = depth < 3
    z = depth[on_object]
    sparse = torch.stack([(u[on_object] + 0.5 - 20) / 40 * z, (v[on_object] + 0.5 - 20) / 40 * z, z], -1)[::8]
    view = View("v", "v", torch.rand(40, 40, 3), K, torch.eye(4), prior=1.0 / depth,
                prior_valid=torch.ones(40, 40, dtype=torch.bool))
    scene = Scene([view], [], sparse, torch.rand(len(sparse), 3), "colmap", prior_kind="inverse_depth")
    pts, _ = prior_points(scene, {"v": (1.0, 0.0)}, 1000, torch.Generator().manual_seed(0))
    assert len(pts) >= 300  # the object's 400 pixels, less its snapped-away edge
    assert pts[:, 2].max() < 2.5 and pts[:, 2].min() > 1.9
