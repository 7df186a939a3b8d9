"""Each view's prior earns its weight (s3dgs.reliability): wrong, constant and noise priors are rejected, correct
ones keep their weight, the initialisation uses only trusted views, and the run says what it did."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from s3dgs import checkpoint, reliability
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


def test_render_verdict_ramps_between_the_thresholds():
    pending = reliability.Trust(0.0, "pending", "fewer than 10 sparse points seen", 3)
    half = reliability.render_verdict(pending, 0.45, 0.3, 0.6)
    assert half.state == "partial" and half.weight == pytest.approx(0.5) and half.render_rho == 0.45
    assert half.points_seen == 3 and "between 0.3 and 0.6" in half.why
    full = reliability.render_verdict(pending, 0.7, 0.3, 0.6)
    assert full.state == "trusted" and full.weight == 1 and full.why == "agrees with the render"
    gone = reliability.render_verdict(pending, 0.2, 0.3, 0.6)
    assert gone.state == "rejected" and gone.weight == 0 and "render below 0.3" in gone.why


def _swap_and_flatten(depth_dir: Path) -> tuple[str, str]:
    """view_02 gets view_22's prior (another part of the scene), view_05 a constant map; returns the keys."""
    shutil.copy(depth_dir / "view_22.png", depth_dir / "view_02.png")
    png = np.full((60, 80), 30000, np.uint16)
    import cv2
    cv2.imwrite(str(depth_dir / "view_05.png"), png)
    return "view_02", "view_05"


def test_the_points_bar_follows_how_well_the_probe_agrees_with_the_points():
    """Noisy points (a probe's render agrees with them at 0.7): a prior agreeing as well is trusted; a dense
    capture's probe (0.95) keeps the bar at points_agree; the points' verdict is kept where the render decides."""
    assert reliability.median_agreement([0.6, 0.7, 0.8]) == pytest.approx(0.7)
    bar = reliability.points_bar(0.7, agree=0.8, reference=0.9, least=0.5)
    assert bar == pytest.approx(0.8 * 0.7 / 0.9)
    assert reliability.points_bar(reliability.median_agreement([0.95, 0.97]), 0.8, 0.9, 0.5) == 0.8
    assert reliability.points_bar(reliability.median_agreement([]), 0.8, 0.9, 0.5) == 0.8
    assert reliability.points_bar(0.1, 0.8, 0.9, 0.5) == 0.8  # a probe that learned nothing: no say
    pending = reliability.Trust(0.0, "pending", "between", 300, 0.65)
    verdict = reliability.points_reverdict(pending, bar, render_rho=0.7, margin=0.15)
    assert verdict.state == "trusted" and verdict.weight == 1.0 and verdict.points_seen == 300
    middling = reliability.Trust(0.0, "pending", "between", 300, 0.55)
    assert reliability.points_reverdict(middling, bar, 0.6, 0.15) is None  # the render decides
    assert reliability.points_reverdict(reliability.Trust(0.0, "pending", "too few points", 3), bar, None, 0.15) is None
    # a dense capture's probe render agrees with the points at 0.95: a prior at 0.7 there is worse than the images
    worse = reliability.points_reverdict(reliability.Trust(0.0, "pending", "between", 300, 0.7), 0.8, 0.95, 0.15)
    assert worse.state == "rejected" and worse.weight == 0.0 and "render agrees better" in worse.why


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
    v = next(v for v in t.scene.train if v.key == wrong)  # its depth term is off
    assert t.view_depth_loss(v, v.gt_depth, torch.ones(60, 80)) is None
    # the former behaviour stays one setting away: every prior weight 1
    old = Trainer(_cfg(f"data_dir={small_copy}", "depth_loss.trust.mode=all"), tmp_path)
    assert {x.weight for x in old.trust.values()} == {1.0} and len(old.init_fits) == len(old.depth.fits)


def test_without_points_the_render_judges_each_prior(small_copy, tmp_path):
    wrong, flat = _swap_and_flatten(small_copy / "depth")
    t = Trainer(_cfg(f"data_dir={small_copy}"), tmp_path)
    t.scene.points = t.scene.points[:0]
    t.trust, t.anchors = t.prepare_priors()
    assert t.trust[flat].state == "rejected" and t.init_fits == {}
    pending = [v for v in t.scene.train if t.trust[v.key].state == "pending"]
    assert len(pending) == 20 and {t.trust[v.key].why for v in pending} == {"the dataset has no sparse points"}
    noise = torch.rand(60, 80, generator=torch.Generator().manual_seed(1)) + 0.5

    def render(v):  # the true geometry, except view_03 whose render is nonsense (its prior disagrees with it)
        return (noise if v.key == "view_03" else v.gt_depth)[None], torch.ones(1, 60, 80)
    t.judge_by_render(render, pending)
    assert t.trust[wrong].state == "rejected" and t.trust[wrong].render_rho < 0.3
    assert t.trust["view_03"].state == "rejected"
    good = [k for k in t.trust if k not in (wrong, flat, "view_03")]
    assert all(t.trust[k].state == "trusted" and t.trust[k].render_rho > 0.85 for k in good)
    v = t.scene.train[0]
    assert t.view_depth_loss(v, v.gt_depth, torch.ones(60, 80)) is not None
    report = reliability.report(t.trust)
    assert report["views_trusted"] == len(good) and report["views_rejected"] == 3
    assert report["views"][wrong]["render_rho"] < 0.3


def test_the_probe_judges_pending_priors_and_leaves_the_run_as_it_was(small_copy, tmp_path):
    """The real probe (a short photometric run): pending priors get their verdict, and the run proper starts
    from the same state as a run whose priors needed no probe."""
    # all pending, and the render judges them all (the points' bar stays 0.99 whatever the probe's agreement)
    cfg = _cfg(f"data_dir={small_copy}", "steps=40", "depth_loss.trust.points_agree=0.99",
               "depth_loss.trust.probe_reference=1e-6")
    t = Trainer(cfg, tmp_path)
    assert {x.state for x in t.trust.values()} == {"pending"}
    assert t.probe_priors() > 0  # seconds, counted in the run's training time
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(3))  # the global generator is where seed=0 left it
    assert all(x.state != "pending" and x.render_rho is not None for x in t.trust.values())
    assert sum(x.weight for x in t.trust.values()) / len(t.trust) > 0.5  # correct priors mostly keep their weight
    trusted = sum(x.state == "trusted" for x in t.trust.values())
    assert trusted and len(t.init_state().params["means"]) == len(t.scene.points) + 1000 * trusted


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
    t.trust[key] = reliability.Trust(0.25, "partial", "rank agreement with the render between 0.3 and 0.6", 0, None, 0.375)
    t.save_checkpoint(st)
    resumed = Trainer(cfg, tmp_path)
    assert resumed.trust[key].state == "trusted"  # as judged anew at start-up
    st2 = resumed.load_checkpoint(tmp_path / "ckpt.pt")
    assert st2.trust is resumed.trust and resumed.trust[key] == t.trust[key]
    assert reliability.report(resumed.trust)["views"][key]["weight"] == 0.25
    record = checkpoint.record_of(checkpoint.read_checkpoint(tmp_path / "ckpt.pt"))  # what s3dgs.eval reports
    assert record.trust[key] == t.trust[key] and record.depth == t.depth_facts()  # the run as trained
