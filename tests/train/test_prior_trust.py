"""Each view's prior earns its weight (s3dgs.reliability): wrong, constant and noise priors are rejected, correct
ones keep their weight, the initialisation uses only trusted views, and the run says what it did."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from s3dgs import reliability
from s3dgs.trainer import Trainer

REPO_ROOT = Path(__file__).resolve().parents[2]


def _cfg(*overrides):
    with initialize_config_dir(str(REPO_ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_rank_correlation_ignores_monotone_maps_and_ties():
    x = torch.linspace(0.1, 5, 200)
    assert reliability.rank_correlation(x, 1 / x) == pytest.approx(-1.0)
    assert reliability.rank_correlation(x, torch.exp(3 * x) + 7) == pytest.approx(1.0)
    assert reliability.rank_correlation(x, torch.ones(200)) == 0.0  # constant: no information
    assert reliability.ranks(torch.tensor([3.0, 1.0, 3.0, 2.0])).tolist() == [2.5, 0.0, 2.5, 1.0]
    noise = torch.rand(5000, generator=torch.Generator().manual_seed(0))
    assert abs(reliability.rank_correlation(x.repeat(25), noise)) < 0.05


def test_render_verdict_only_lowers_a_weight_once_given():
    pending = reliability.Trust(0.0, "pending", "fewer than 10 sparse points seen", 3)
    t = reliability.render_verdict(pending, 0.65, 300, 0.5, 0.8)
    assert t.state == "render" and t.weight == pytest.approx(0.5) and t.render_step == 300
    assert reliability.render_verdict(t, 0.95, 301, 0.5, 0.8).weight == pytest.approx(0.5)  # never up
    low = reliability.render_verdict(t, 0.55, 302, 0.5, 0.8)
    assert low.weight == pytest.approx(1 / 6) and low.render_rho == pytest.approx(0.55) and low.render_step == 300
    gone = reliability.render_verdict(low, 0.2, 303, 0.5, 0.8)
    assert gone.state == "rejected" and gone.weight == 0 and "render" in gone.why
    assert reliability.render_verdict(gone, 0.99, 304, 0.5, 0.8) is gone  # rejected stays rejected
    trusted = reliability.Trust(1.0, "trusted", "agrees with the sparse points", 50, 0.9)
    assert reliability.render_verdict(trusted, 0.0, 305, 0.5, 0.8) is trusted


def _swap_and_flatten(depth_dir: Path) -> tuple[str, str]:
    """view_02 gets view_22's prior (another part of the scene), view_05 a constant map; returns the keys."""
    shutil.copy(depth_dir / "view_22.png", depth_dir / "view_02.png")
    png = np.full((60, 80), 30000, np.uint16)
    import cv2
    cv2.imwrite(str(depth_dir / "view_05.png"), png)
    return "view_02", "view_05"


def test_wrong_and_constant_priors_are_rejected_and_seed_no_points(small_copy, tmp_path):
    wrong, flat = _swap_and_flatten(small_copy / "depth")
    t = Trainer(_cfg(f"data_dir={small_copy}", "init.prior_points=40"), tmp_path)
    # the points reject view_22's prior on view_02, and the constant
    assert t.trust[wrong].state == "rejected" and t.trust[wrong].weight == 0 and t.trust[wrong].points_rho < 0.3
    assert t.trust[flat].state == "rejected" and t.trust[flat].why == "the prior is constant"
    right = [k for k in t.trust if k not in (wrong, flat)]
    assert all(t.trust[k].state == "trusted" and t.trust[k].weight == 1 and t.trust[k].points_rho > 0.85
               for k in right)
    assert set(t.init_fits) == set(right)  # only trusted views seed points
    n = len(t.init_state().params["means"])
    assert n == len(t.scene.points) + 40 * len(right)
    # for the rest of the run, whatever the render
    v = next(v for v in t.scene.train if v.key == wrong)
    assert t.view_depth_loss(v, v.gt_depth, torch.ones(60, 80), t.trust_from_step) is None
    # the former behaviour stays one setting away: every prior weight 1
    old = Trainer(_cfg(f"data_dir={small_copy}", "depth_loss.trust.mode=all"), tmp_path)
    assert {x.weight for x in old.trust.values()} == {1.0} and len(old.init_fits) == len(old.depth_align)


def test_without_points_the_render_judges_each_prior(small_copy, tmp_path):
    wrong, flat = _swap_and_flatten(small_copy / "depth")
    t = Trainer(_cfg(f"data_dir={small_copy}", "steps=100"), tmp_path)
    t.scene.points = t.scene.points[:0]
    t.depth_align, t.trust, t.init_fits = t._depth_alignment()
    assert t.trust[flat].state == "rejected" and t.init_fits == {}
    assert {t.trust[k].state for k in t.trust if k != flat} == {"pending"}
    step = t.trust_from_step
    assert step == 30
    noise = torch.rand(60, 80, generator=torch.Generator().manual_seed(1)) + 0.5
    losses = {}
    for v in t.scene.train:
        depth = noise if v.key == "view_03" else v.gt_depth  # view_03 renders nonsense: its prior disagrees
        losses[v.key] = t.view_depth_loss(v, depth, torch.ones(60, 80), step)
    assert t.trust[wrong].state == "rejected" and losses[wrong] is None
    assert t.trust["view_03"].state == "rejected" and t.trust["view_03"].render_rho < 0.3
    good = [k for k in t.trust if k not in (wrong, flat, "view_03")]
    assert all(t.trust[k].state == "render" and t.trust[k].weight == 1 and losses[k] is not None for k in good)
    report = t.trust_report()
    assert report["views_render"] == len(good) and report["views_rejected"] == 3
    assert report["views"][wrong]["render_rho"] < 0.5 and report["views"][wrong]["render_step"] == step


def test_a_run_with_a_mostly_wrong_prior_says_so(run_train, small_copy, tmp_path):
    """Priors shuffled between views: the run rejects most, says so in one line, and metrics.json has why."""
    depth = small_copy / "depth"
    keys = sorted(p.stem for p in depth.glob("view_*.png"))
    maps = {k: (depth / f"{k}.png").read_bytes() for k in keys}
    for k, other in zip(keys, keys[7:] + keys[:7]):
        (depth / f"{k}.png").write_bytes(maps[other])
    run_dir = tmp_path / "run"
    run_train(f"data_dir={small_copy}", "steps=20", f"hydra.run.dir={run_dir}", "save_renders=false",
                     "log.tensorboard=false")
    m = json.loads((run_dir / "metrics.json").read_text())["depth"]
    assert m["views_trusted"] == 0 and m["views_rejected"] >= 12 and m["mean_weight"] < 0.1
    assert all(set(v) >= {"weight", "state", "why", "points_rho"} for v in m["views"].values())
    log = (run_dir / "train.log").read_text()
    assert log.count("the depth prior was mostly rejected") == 1


def test_verdicts_travel_with_the_checkpoint(example_dir, tmp_path):
    """A resumed run continues with the weights the render gave, not the points' first verdicts."""
    cfg = _cfg(f"data_dir={example_dir}", "steps=10")
    t = Trainer(cfg, tmp_path)
    st = t.init_state()
    key = t.scene.train[0].key
    t.trust[key] = reliability.Trust(0.25, "render", "partly agrees with the render (0.3-0.6)", 0, None, 0.375, 3)
    t.save_checkpoint(st)
    resumed = Trainer(cfg, tmp_path)
    assert resumed.trust[key].state == "trusted"  # as judged anew at start-up
    st2 = resumed.load_checkpoint(tmp_path / "ckpt.pt")
    assert st2.trust is resumed.trust and resumed.trust[key] == t.trust[key]
    assert resumed.trust_report()["views"][key]["weight"] == 0.25
