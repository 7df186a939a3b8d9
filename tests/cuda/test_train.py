"""Training on a CUDA GPU with the real CLI, on the built-in example with its depth priors (anchored loss,
lambda_depth=0.1): the main job lands near the CPU's documented figures, both densification strategies land near a
CPU run of the same length on the same machine, and a run stopped halfway then resumed ends where an
uninterrupted one does."""

import json
import math
import subprocess
import sys

import pytest
import torch

from s3dgs.checkpoint import read_checkpoint
from s3dgs.gaussians import load_ply

from .conftest import GPU, MAIN_STEPS, SHORT_STEPS, TIMEOUT, run_cli

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU: trains with gsplat's CUDA kernels")

# The main job on CPU (`python -m s3dgs.train`, 1000 steps, seed 0, all 21 training views): test PSNR 31.29 dB, depth
# AbsRel 0.0251 (docs/performance.md). A GPU run draws other random numbers (MCMC's noise and relocation use the
# CUDA generator) and sums in another order, so it is a run of another seed, not a replay: seeds of the example
# differ by a few tenths of a dB and a few % of AbsRel. The bounds are loose on purpose; a broken CUDA path (a
# strategy that stops densifying, a depth term that is never applied) misses them by far more.
CPU_MAIN_PSNR, CPU_MAIN_ABS_REL = 31.29, 0.0251
MAIN_PSNR_TOLERANCE = 1.5  # dB either way
SHORT_PSNR_TOLERANCE = 1.0  # dB, GPU against CPU at SHORT_STEPS on the same machine
ABS_REL_RATIO = 1.5  # AbsRel within this factor either way

STOP_AT = SHORT_STEPS // 2
# `python -m s3dgs.train` with one change: SIGINT (Ctrl-C) raised right after step STOP_AT, so the run stops at that
# step boundary exactly (writes ckpt.pt, exits 130) instead of wherever a timer would catch it.
INTERRUPTED_CLI = f"""
import runpy, signal, sys
from s3dgs.trainer import Trainer
step_once = Trainer.train_step
def train_step(self, st, step, view, use_depth):
    out = step_once(self, st, step, view, use_depth)
    if st.step == {STOP_AT}:
        signal.raise_signal(signal.SIGINT)
    return out
Trainer.train_step = train_step
sys.argv = ["s3dgs.train", *sys.argv[1:]]
runpy.run_module("s3dgs.train", run_name="__main__", alter_sys=True)
"""


def test_main_job_on_the_gpu_lands_near_the_cpu_figures(gpu_main_run):
    m = gpu_main_run.metrics
    assert m["device"] == GPU and m["steps"] == MAIN_STEPS and m["num_train_views"] == 21
    depth = m["depth"]
    assert depth["loss"] == "anchored" and depth["views_with_prior"] == 21 and depth["views_trusted"] == 21
    t = m["test"]
    assert abs(t["psnr"] - CPU_MAIN_PSNR) <= MAIN_PSNR_TOLERANCE, t
    assert CPU_MAIN_ABS_REL / ABS_REL_RATIO <= t["depth_abs_rel"] <= CPU_MAIN_ABS_REL * ABS_REL_RATIO, t
    assert t["depth_abs_rel"] < t["prior_abs_rel"]  # the render beats the test priors alone, as on CPU
    assert m["train_seconds"] > 0 and m["num_gaussians"] > 1000
    run = gpu_main_run.dir
    ply = load_ply(run / "point_cloud.ply")
    assert len(ply["x"]) == m["num_gaussians"]
    assert all(torch.isfinite(torch.from_numpy(v)).all() for v in ply.values())
    ck = read_checkpoint(run / "ckpt.pt")  # written from CUDA tensors, read on the CPU
    assert ck["step"] == MAIN_STEPS and "cuda" in ck["rng"]
    assert sorted(p.name for p in (run / "renders").iterdir()) == ["view_00.png", "view_08.png", "view_16.png"]
    assert list((run / "tb").iterdir())  # TensorBoard's evaluations ran on the GPU too


@pytest.mark.parametrize("strategy", ["mcmc", "default"])
def test_strategy_on_the_gpu_lands_near_a_cpu_run(short_runs, strategy):
    gpu, cpu = short_runs(GPU, strategy).metrics, short_runs("cpu", strategy).metrics
    assert gpu["device"] == GPU and cpu["device"] == "cpu"
    assert gpu["steps"] == cpu["steps"] == SHORT_STEPS and gpu["depth"]["loss"] == "anchored"
    g, c = gpu["test"], cpu["test"]
    assert abs(g["psnr"] - c["psnr"]) <= SHORT_PSNR_TOLERANCE, (g, c)
    assert 1 / ABS_REL_RATIO <= g["depth_abs_rel"] / c["depth_abs_rel"] <= ABS_REL_RATIO, (g, c)
    if strategy == "mcmc":  # the count follows from the budget alone: the same on both devices
        assert gpu["num_gaussians"] == cpu["num_gaussians"]
    else:  # densified by gradient thresholds: near, not equal
        assert 0.5 <= gpu["num_gaussians"] / cpu["num_gaussians"] <= 2, (gpu["num_gaussians"], cpu["num_gaussians"])


def test_resume_on_the_gpu_ends_where_an_uninterrupted_run_does(short_runs, example_dir, env, workdir):
    reference = short_runs(GPU, "mcmc")
    run_dir = workdir / "gpu_mcmc_resumed"
    args = [f"data_dir={example_dir}", f"device={GPU}", "strategy=mcmc", f"steps={SHORT_STEPS}",
            "log.tensorboard=false", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run([sys.executable, "-c", INTERRUPTED_CLI, *args], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert proc.returncode == 130, proc.stderr[-5000:]  # stopped by Ctrl-C after writing ckpt.pt
    assert read_checkpoint(run_dir / "ckpt.pt")["step"] == STOP_AT
    assert not (run_dir / "metrics.json").exists()

    run_cli("s3dgs.train", *args, "resume=true", env=env, cwd=workdir)
    assert f"at step {STOP_AT}" in (run_dir / "train.log").read_text()
    m, ref = json.loads((run_dir / "metrics.json").read_text()), reference.metrics
    assert m["steps"] == SHORT_STEPS and m["device"] == GPU
    assert m["num_gaussians"] == ref["num_gaussians"]
    # gsplat's backward adds gradients with atomics, so two GPU runs differ in the last bits from the first step on
    # and MCMC's sampling can then pick other Gaussians: equal up to that noise, not bit for bit as on CPU
    t, r = m["test"], ref["test"]
    assert abs(t["psnr"] - r["psnr"]) <= 0.5, (t, r)
    assert abs(t["depth_abs_rel"] - r["depth_abs_rel"]) <= 0.2 * r["depth_abs_rel"], (t, r)
    assert abs(t["ssim"] - r["ssim"]) <= 0.01, (t, r)
    assert math.isclose(m["depth"]["mean_weight"], ref["depth"]["mean_weight"])


def test_probe_judges_the_priors_on_the_gpu(short_runs, train):
    """The photometric probe on the GPU: ``points_agree=0.99`` leaves every view pending, ``probe_least`` above any
    correlation keeps that bar after the probe, and ``probe_margin=1`` rejects none by the points, so each prior is
    judged by its rank agreement with the probe's render (0.3 x steps from the sparse points alone). The example's
    priors are right: on the CPU a 30-step probe already rates them 0.57-0.80 (trusted from 0.6, rejected at 0.3)."""
    run = train(f"gpu_probe_{SHORT_STEPS}", f"device={GPU}", f"steps={SHORT_STEPS}", "log.tensorboard=false",
                "depth_loss.trust.points_agree=0.99", "depth_loss.trust.probe_least=1.01",
                "depth_loss.trust.probe_margin=1.0")
    assert "photometric probe" in (run.dir / "train.log").read_text()
    depth = run.metrics["depth"]
    rhos = [v["render_rho"] for v in depth["views"].values()]
    assert len(rhos) == 21 and all(rho is not None and 0.4 <= rho <= 1 for rho in rhos), rhos
    assert depth["views_rejected"] == depth["views_pending"] == 0 and depth["mean_weight"] >= 0.8, depth["summary"]
    plain = short_runs(GPU, "mcmc").metrics["test"]
    assert abs(run.metrics["test"]["psnr"] - plain["psnr"]) <= SHORT_PSNR_TOLERANCE + 0.5, (run.metrics["test"], plain)
