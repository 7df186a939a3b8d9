"""Evaluation: ``python -m s3dgs.eval`` on a finished run, the metrics over views (s3dgs.metrics), large renders
(s3dgs.images), the camera path (s3dgs.camera_path)."""

import json
import subprocess

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from s3dgs.data.scene import View
from s3dgs.camera_path import camera_path
from s3dgs.eval import main
from s3dgs.images import save_side_by_side
from s3dgs.metrics import depth_metrics, evaluate_views


def test_eval_reproduces_the_runs_metrics_and_writes_a_path_video(run_train, python, train_env, small_copy, tmp_path):
    """Trained with a relative data_dir; evaluated from another folder (the path is anchored at training's cwd)."""
    run_dir = tmp_path / "run"
    run_train("data_dir=../scene", "steps=20", "save_renders=false", f"hydra.run.dir={run_dir}")
    trained = json.loads((run_dir / "metrics.json").read_text())
    (run_dir / "metrics.json").write_text(json.dumps(trained | {"test": {}, "train_seconds": 123.0}))

    proc = subprocess.run([python, "-m", "s3dgs.eval", str(run_dir), "--frames", "12", "--fps", "10"], cwd=tmp_path,
                          env=train_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((run_dir / "metrics.json").read_text())
    assert list(m) == list(trained) and m["train_seconds"] == 123.0 and m["steps"] == 20
    for split in ("test", "train"):
        assert list(m[split]) == list(trained[split])
        assert m[split]["psnr"] == pytest.approx(trained[split]["psnr"], abs=1e-3)
        assert m[split]["ssim"] == pytest.approx(trained[split]["ssim"], abs=1e-5)
    assert not (run_dir / "renders").exists() and not list(run_dir.glob(".tmp-*"))

    cap = cv2.VideoCapture(str(run_dir / "path.mp4"))
    frames = []
    while (f := cap.read())[0]:
        frames.append(f[1])
    assert len(frames) == 12 and frames[0].shape == (60, 80, 3)
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10)
    assert np.abs(frames[0].astype(int) - frames[-1]).mean() > 1  # the camera moves


@pytest.mark.parametrize("make", ["missing", "no_config", "no_ckpt"])
def test_eval_errors_are_one_line(tmp_path, capsys, make):
    run_dir = tmp_path / "run"
    if make != "missing":
        (run_dir / ".hydra").mkdir(parents=True)
    if make == "no_ckpt":
        (run_dir / ".hydra" / "config.yaml").write_text("data_dir: null\ndepth_dir: null\n")
    assert main([str(run_dir)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    expected = {"missing": f"error: {run_dir}: not a folder",
                "no_config": f"error: {run_dir / '.hydra' / 'config.yaml'} not found",
                "no_ckpt": f"error: {run_dir / 'ckpt.pt'} not found"}[make]
    assert len(err) == 1 and err[0].startswith(expected)


def _view(image: torch.Tensor, mask: torch.Tensor | None = None, name: str = "a") -> View:
    return View(f"{name}.png", name, image, torch.eye(3), torch.eye(4), mask=mask)


def test_masked_metrics_only_when_a_view_has_a_mask():
    gt = torch.full((8, 8, 3), 0.5)
    render = gt.clone()
    render[:, 4:] = 0.0  # wrong on the right half only
    render_fn = lambda v: (render[None], torch.ones(1, 8, 8))  # noqa: E731
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:, :4] = True
    plain, rows = evaluate_views(render_fn, [_view(gt)])
    assert rows == {"a": {k: plain[k] for k in ("psnr", "ssim")}}
    assert set(plain) == {"psnr", "ssim", "num_views"}
    assert plain["psnr"] == pytest.approx(-10 * np.log10(0.125), abs=1e-4)
    both, rows = evaluate_views(render_fn, [_view(gt, mask), _view(gt, name="b")])
    assert list(rows) == ["a", "b"] and rows["a"]["psnr_masked"] == 100
    assert both["psnr"] == pytest.approx(plain["psnr"]) and both["ssim"] == pytest.approx(plain["ssim"])
    assert both["psnr_masked"] == pytest.approx((100 + plain["psnr"]) / 2)  # masked: exact (PSNR capped at 100)
    assert plain["ssim"] < both["ssim_masked"] < 1


def test_side_by_side_colours_depth_beyond_16M_pixels(tmp_path):
    """torch.quantile refuses more than 16M elements; 4100 x 4100 is 16.8M."""
    n = 4100
    depth = torch.linspace(1, 5, n * n).reshape(n, n)
    black = torch.zeros(1, 1, 3).expand(n, n, 3)
    save_side_by_side(tmp_path / "big.png", black, black, depth)
    img = cv2.imread(str(tmp_path / "big.png"))
    assert img.shape == (n, 3 * n, 3)
    assert (img[0, 2 * n] != img[-1, -1]).any()  # near and far get different colours


def test_camera_path_passes_through_the_cameras_in_order():
    rots = Rotation.from_euler("y", [[0], [30], [60], [90]], degrees=True).as_matrix()
    c2w = np.tile(np.eye(4), (4, 1, 1))
    c2w[:, :3, :3] = rots
    c2w[:, :3, 3] = [[0, 0, 0], [1, 0, 0], [2, 1, 0], [3, 1, 1]]
    np.testing.assert_allclose(camera_path(c2w, 4), c2w, atol=1e-9)
    path = camera_path(c2w, 31)
    assert path.shape == (31, 4, 4)
    np.testing.assert_allclose(path[:, :3, :3] @ path[:, :3, :3].transpose(0, 2, 1), np.tile(np.eye(3), (31, 1, 1)),
                               atol=1e-9)
    assert (np.diff(path[:, 0, 3]) > 0).all()


def test_prior_abs_rel_is_the_priors_own_error_after_the_best_affine():
    """An exact inverse-depth prior under any scale/shift scores 0; a warped one scores what its warp costs,
    and a render equal to the truth scores below it (the bar a depth-supervised render has to beat)."""
    h, w = 30, 40
    gt = 1.0 + torch.rand(h, w, generator=torch.Generator().manual_seed(0)) * 3
    warp = 1 + 0.1 * torch.linspace(-1, 1, w)[None].expand(h, w)
    image = torch.zeros(h, w, 3)
    exact = View("a.png", "a", image, torch.eye(3), torch.eye(4), gt_depth=gt, prior=3.0 / gt - 0.2,
                 prior_valid=torch.ones(h, w, dtype=torch.bool))
    warped = View("b.png", "b", image, torch.eye(3), torch.eye(4), gt_depth=gt, prior=3.0 * warp / gt - 0.2,
                  prior_valid=torch.ones(h, w, dtype=torch.bool))
    render = lambda v: (image[None], gt[None])  # noqa: E731
    assert evaluate_views(render, [exact], prior_kind="inverse_depth")[0]["prior_abs_rel"] < 1e-5
    m = evaluate_views(render, [warped], prior_kind="inverse_depth")[0]
    assert 0.02 < m["prior_abs_rel"] < 0.1 and m["depth_abs_rel"] < 1e-6
    assert "prior_abs_rel" not in evaluate_views(render, [warped])[0]  # no prior kind: no prior metric


def test_depth_metrics_of_a_view_with_no_known_ground_truth_are_none_and_left_out_of_the_means(caplog):
    """An all-zero ground-truth depth (no known pixel) gave NaN metrics, and NaN means for every view: now its
    metrics are None and the means are those of the other views, with a warning."""
    h, w = 30, 40
    gen = torch.Generator().manual_seed(0)
    gt = 1.0 + torch.rand(h, w, generator=gen) * 3
    image, valid = torch.zeros(h, w, 3), torch.ones(h, w, dtype=torch.bool)
    known = View("a.png", "a", image, torch.eye(3), torch.eye(4), gt_depth=gt, prior=1 / gt, prior_valid=valid)
    empty = View("b.png", "b", image, torch.eye(3), torch.eye(4), gt_depth=torch.zeros(h, w), prior=1 / gt,
                 prior_valid=valid)
    render = lambda v: (image[None], (gt * (1 + 0.1 * torch.rand(h, w, generator=gen)))[None])  # noqa: E731
    assert depth_metrics(gt, torch.zeros(h, w)) == {"abs_rel": None, "delta1": None}
    means, rows = evaluate_views(render, [known, empty], prior_kind="inverse_depth")
    assert rows["b"]["depth_abs_rel"] is None and rows["b"]["depth_delta1"] is None
    assert rows["b"]["prior_abs_rel"] is None
    assert 0.01 < rows["a"]["depth_abs_rel"] < 0.1 and rows["a"]["prior_abs_rel"] < 1e-5
    for key in ("depth_abs_rel", "depth_delta1", "prior_abs_rel"):
        assert means[key] == rows["a"][key]
    assert "depth_abs_rel: 1 of 2 views have no known ground-truth depth, left out of the mean" in caplog.text
    alone = evaluate_views(render, [empty], prior_kind="inverse_depth")[0]
    assert alone["depth_abs_rel"] is None and alone["psnr"] == 100
