"""The real Hydra app in subprocesses, started from a folder outside the checkout."""

import csv
import json

import numpy as np
import pytest

from s3dgs.gaussians import load_ply, ply_fields


def test_run_writes_every_output_then_resume_continues(run_train, example_dir, tmp_path):
    run_dir = tmp_path / "run"
    run_train(f"data_dir={example_dir}", "steps=30", "save_every=20", f"hydra.run.dir={run_dir}")
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["steps"] == 30 and m["num_train_views"] == 21 and m["depth_loss"] == "anchored"
    depth = m["depth"]
    assert {k: depth[k] for k in ("loss", "alignment", "views_with_prior", "views_anchored", "views_scale_field",
                                  "train_views", "views_trusted", "views_rejected", "mean_weight")} == {
        "loss": "anchored", "alignment": "per_image", "views_with_prior": 21, "views_anchored": 21,
        "views_scale_field": 21, "train_views": 21, "views_trusted": 21, "views_rejected": 0, "mean_weight": 1.0}
    assert len(depth["views"]) == 21 and all(v["weight"] == 1.0 and v["points_rho"] > 0.85
                                             for v in depth["views"].values())
    t = m["test"]
    assert t["num_views"] == 3
    assert 10 < t["psnr"] < 40 and 0 < t["ssim"] <= 1
    assert 0 < t["depth_abs_rel"] < 1 and 0 < t["depth_delta1"] <= 1
    assert m["train_seconds"] > 0 and m["num_gaussians"] > 1000
    ply = load_ply(run_dir / "point_cloud.ply")
    assert list(ply) == ply_fields(15)  # SH degree 3: 45 f_rest
    assert len(ply["x"]) == m["num_gaussians"] and np.isfinite(ply["opacity"]).all()
    renders = sorted(p.name for p in (run_dir / "renders").iterdir())
    assert renders == ["view_00.png", "view_08.png", "view_16.png"]
    import cv2
    assert cv2.imread(str(run_dir / "renders" / "view_00.png")).shape == (60, 240, 3)  # render | gt | depth
    assert (run_dir / "ckpt.pt").exists() and (run_dir / ".hydra" / "config.yaml").exists()
    assert not list(run_dir.glob(".tmp-*"))

    run_train(f"data_dir={example_dir}", "steps=40", "resume=true", f"hydra.run.dir={run_dir}")
    m2 = json.loads((run_dir / "metrics.json").read_text())
    assert m2["steps"] == 40
    assert m2["train_seconds"] > m["train_seconds"]
    assert "resumed from" in (run_dir / "train.log").read_text() and "at step 30" in (run_dir / "train.log").read_text()


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_multirun_writes_runs_and_one_sweep_table(run_train, tmp_path, launcher):
    """data_dir left at null: the cached example scene is used."""
    sweep = tmp_path / "sweep"
    extra = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    run_train("-m", "lambda_depth=0,0.1", "steps=4", "save_renders=false", f"hydra.sweep.dir={sweep}", *extra)
    for job in ("0", "1"):
        assert json.loads((sweep / job / "metrics.json").read_text())["steps"] == 4
    with open(sweep / "sweep_metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["overrides"] for r in rows] == ["lambda_depth=0", "lambda_depth=0.1"]
    assert all(float(r["test.psnr"]) > 5 and float(r["test.depth_abs_rel"]) > 0 for r in rows)
    assert (sweep / "sweep_metrics.md").read_text().count("\n") == 4


def test_bad_input_is_one_clear_line(run_train, tmp_path, example_dir):
    proc = run_train(f"data_dir={tmp_path / 'missing'}", f"hydra.run.dir={tmp_path / 'r1'}", check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: data_dir {tmp_path / 'missing'}: not a folder")
    proc = run_train(f"data_dir={example_dir}", "depth_loss=l1", f"hydra.run.dir={tmp_path / 'r2'}", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "depth_loss=l1 needs metric priors" in proc.stderr.strip().splitlines()[-1]


def test_ctrl_c_saves_a_checkpoint_to_resume_from(python, train_env, example_dir, tmp_path):
    import signal
    import subprocess
    import time

    import torch
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([python, "-m", "s3dgs.train", f"data_dir={example_dir}", "steps=100000",
                             f"hydra.run.dir={run_dir}"], cwd=tmp_path, env=train_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    log = run_dir / "train.log"
    while time.time() < deadline and not (log.exists() and "training" in log.read_text()):
        time.sleep(0.5)
    time.sleep(3)  # some steps
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    ck = torch.load(run_dir / "ckpt.pt", weights_only=False)
    assert ck["step"] > 0
    assert len({len(v) for v in ck["params"].values()}) == 1  # written between steps, never mid-densification
    assert "continue with resume=true" in log.read_text()
    assert not list(run_dir.glob(".tmp-*")) and not (run_dir / "metrics.json").exists()
