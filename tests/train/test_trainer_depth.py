"""The trainer's depth paths in-process (Hydra compose API, same config files): each loss applies to the views
it should, and metric priors get one scene-to-metric factor."""

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from preprocess.depth_png import DepthMeta, quantize, write_depth_png
from s3dgs import alignment
from s3dgs.depth_terms.ssi import ssi_loss
from s3dgs.losses import to_prior_space
from s3dgs.strategy import REFERENCE_STEPS, CPUMCMCStrategy, make_strategy, scaled_steps
from s3dgs.trainer import TrainError, Trainer

REPO_ROOT = Path(__file__).resolve().parents[2]


def _cfg(*overrides):
    with initialize_config_dir(str(REPO_ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def _first_losses(trainer, n=3):
    st = trainer.init_state()
    out = []
    for v in trainer.scene.train[:n]:
        _, depth, alpha, _ = trainer.render(st.params, v, 0)
        out.append(trainer.view_depth_loss(v, depth[0].detach(), alpha[0].detach()))
    return out


def test_sparse_loss_aligns_views_to_the_points(example_dir, tmp_path):
    t = Trainer(_cfg(f"data_dir={example_dir}", "depth_loss=sparse"), tmp_path)
    assert len(t.depth.fits) >= 15  # most of the 21 training views have enough points
    assert all(s > 0 for s, _ in t.depth.fits.values())
    losses = [x for x in _first_losses(t) if x is not None]
    assert losses and all(np.isfinite(float(x)) and float(x) > 0 for x in losses)


def test_metric_priors_with_l1(small_copy, tmp_path):
    meta = DepthMeta(backend="test", model="metric", kind="depth", relative=False, units="m")
    for f in sorted((small_copy / "gt_depth").glob("*.npy")):
        png, lo, hi = quantize(2.5 * np.load(f))  # the scene is in units of 0.4 m
        write_depth_png(small_copy / "depth" / f"{f.stem}.png", png)
        meta.images[f.stem] = {"min": lo, "max": hi, "width": 80, "height": 60, "source": f.name}
    meta.save(small_copy / "depth")
    t = Trainer(_cfg(f"data_dir={small_copy}", "depth_loss=l1"), tmp_path)
    k = t.depth.scene_to_metric
    assert k == pytest.approx(2.5, rel=0.03)
    assert all(x is not None and float(x) > 0 for x in _first_losses(t))
    with pytest.raises(TrainError, match="depth_loss=sparse aligns relative inverse-depth priors"):
        Trainer(_cfg(f"data_dir={small_copy}", "depth_loss=sparse"), tmp_path)
    # the default anchors metric priors in depth: z_scene = 0.4 * metres + 0
    t = Trainer(_cfg(f"data_dir={small_copy}"), tmp_path)
    assert len(t.depth.fits) == 21
    # (each a scale field on these dense points: 0.4 everywhere, offset 0 everywhere)
    maps = [alignment.alignment_maps(f, 60, 80) for f in t.depth.fits.values()]
    assert all(torch.allclose(torch.as_tensor(s), torch.tensor(0.4), rtol=0.05)
               and float(torch.as_tensor(o).abs().max()) < 0.05 for s, o in maps)
    assert all(x is not None and float(x) > 0 for x in _first_losses(t))


def test_anchored_is_the_default_and_waits_for_the_render_without_points(example_dir, tmp_path, caplog):
    t = Trainer(_cfg(f"data_dir={example_dir}"), tmp_path)
    assert t.cfg.depth_loss.name == "anchored"
    assert len(t.depth.fits) == 21  # accurate points: all fit, with positive scales (maps)
    assert all(bool((torch.as_tensor(alignment.alignment_maps(f, 60, 80)[0]) > 0).all())
               for f in t.depth.fits.values())
    meta = DepthMeta.load(example_dir / "depth").images
    assert all(v.prior_step == pytest.approx((meta[v.key]["max"] - meta[v.key]["min"]) / 65535)
               for v in t.scene.train)
    losses = _first_losses(t)
    assert all(x is not None and 0 < float(x) < 2 for x in losses)
    st = t.init_state()
    depth = t.evaluate(st)["depth"]
    assert {k: depth[k] for k in ("loss", "alignment", "views_with_prior", "views_anchored", "views_scale_field",
                                  "train_views", "views_trusted")} == {
        "loss": "anchored", "alignment": "per_image", "views_with_prior": 21, "views_anchored": 21,
        "views_scale_field": 21, "train_views": 21, "views_trusted": 21}
    # no sparse points: every view waits for the probe's render, then uses the ssi fit times its weight; no warning
    t.scene.points = t.scene.points[:0]
    caplog.clear()
    t.trust, t.anchors = t.prepare_priors()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert t.depth.fits == {} and t.init_fits == {}
    assert {x.state for x in t.trust.values()} == {"pending"}
    v = t.scene.train[0]
    d, alpha = v.gt_depth.clone(), torch.ones(60, 80)  # a render with the true geometry
    assert t.view_depth_loss(v, d, alpha) is None  # pending: no weight yet
    t.judge_by_render(lambda view: (view.gt_depth[None], torch.ones(1, 60, 80)), t.scene.train)
    mask = v.prior_valid & (alpha > t.cfg.depth_loss.min_alpha)
    ssi = ssi_loss(to_prior_space(d, "inverse_depth", t.cfg.near_plane), v.prior, mask)
    assert t.trust[v.key].state == "trusted" and t.trust[v.key].weight == 1.0
    assert float(t.view_depth_loss(v, d, alpha)) == pytest.approx(float(ssi))
    assert t.evaluate(st)["depth"]["views_anchored"] == 0


def test_depth_dir_matching_no_image_is_an_error(small_copy, tmp_path, run_train):
    for f in (small_copy / "depth").glob("*.png"):
        f.rename(f.with_name(f"IMG_{f.name}"))
    with pytest.raises(TrainError, match=r"depth_dir .*depth: no depth PNG matches a training image \(expected "
                                         r"<image key>.png, e.g. view_01.png; found e.g. IMG_view_00.png\)"):
        Trainer(_cfg(f"data_dir={small_copy}"), tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TrainError, match="it is empty"):
        Trainer(_cfg(f"data_dir={small_copy}", f"depth_dir={empty}"), tmp_path)
    assert Trainer(_cfg(f"data_dir={small_copy}", "lambda_depth=0"), tmp_path).depth.fits == {}
    proc = run_train(f"data_dir={small_copy}", f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: depth_dir {small_copy / 'depth'}: no depth PNG")


def test_no_priors_trains_without_depth_term(small_copy, tmp_path, caplog):
    import shutil
    shutil.rmtree(small_copy / "depth")
    t = Trainer(_cfg(f"data_dir={small_copy}", "lambda_depth=0.1"), tmp_path)
    assert t.scene.prior_kind is None and "training without the depth term" in caplog.text


def test_strategy_steps_scale_with_the_run():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    s = make_strategy(_cfg("steps=1000", "strategy=default").strategy, 1000, 10**6, cpu)
    assert (s.refine_start_iter, s.refine_stop_iter, s.refine_every, s.reset_every) == (17, 500, 25, 100)
    assert s.cap_max == 0  # gsplat's default strategy: no budget unless asked
    assert scaled_steps(1000, REFERENCE_STEPS) == 1000 and scaled_steps(0, 10) == 0
    m = make_strategy(_cfg("strategy=mcmc").strategy, 3000, 6 * 80 * 60, cpu)
    assert isinstance(m, CPUMCMCStrategy) and (m.refine_start_iter, m.refine_every) == (50, 25)
    assert m.cap_max == 6 * 80 * 60 // 16  # one Gaussian per 16 training pixels
    mcmc = _cfg("strategy=mcmc").strategy
    assert make_strategy(mcmc, 3000, 10**8, cpu).cap_max == 50_000  # auto: bounded CPU step time
    assert make_strategy(mcmc, 3000, 10**8, cuda).cap_max == 1_000_000  # auto: gsplat's default
    assert make_strategy(_cfg("strategy=mcmc", "strategy.cap_max=100").strategy, 3000, 10**6, cpu).cap_max == 100
    with pytest.raises(TrainError, match="strategy.cap_max=-3"):
        make_strategy(_cfg("strategy=mcmc", "strategy.cap_max=-3").strategy, 3000, 10**6, cpu)


def test_depth_weight_decays_like_the_reference(example_dir, tmp_path):
    t = Trainer(_cfg(f"data_dir={example_dir}", "lambda_depth=1.0", "depth_loss.decay=0.01", "steps=300"), tmp_path)
    assert t.depth_weight(0) == pytest.approx(1.0)
    assert t.depth_weight(150) == pytest.approx(0.1)
    assert t.depth_weight(300) == pytest.approx(0.01)


def test_prior_initialisation_is_automatic_and_an_error_without_priors(small_copy, tmp_path):
    t = Trainer(_cfg(f"data_dir={small_copy}", "data.num_train_views=3", "init.prior_points=50"), tmp_path)
    n_points = len(t.scene.points)
    assert len(t.init_state().params["means"]) == n_points + 3 * 50  # auto: priors exist, 50 per view
    import shutil
    shutil.rmtree(small_copy / "depth")
    t = Trainer(_cfg(f"data_dir={small_copy}", "lambda_depth=0"), tmp_path)
    assert len(t.init_state().params["means"]) == n_points  # auto: no priors, nothing added
    with pytest.raises(TrainError, match="init.from_priors=true but there are no depth priors"):
        Trainer(_cfg(f"data_dir={small_copy}", "lambda_depth=0", "init.from_priors=true"), tmp_path).init_state()
