"""``python -m s3dgs.eval`` and ``python -m s3dgs.export`` on a run trained on the GPU: evaluation on the GPU
reproduces the run's metrics, the same checkpoint evaluated on the CPU agrees (a model trained on a GPU server and
looked at on a laptop), and every export format reads back as the trained Gaussians."""

import json
import shutil

import cv2
import numpy as np
import pytest
import torch
from plyfile import PlyData

from s3dgs.gaussians import gaussians_from_ply

from .conftest import GPU, MAIN_STEPS, run_cli

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU: evaluates a run trained with gsplat's CUDA kernels")


def test_eval_on_the_gpu_reproduces_the_run_and_the_cpu_agrees(gpu_main_run, env, tmp_path):
    run = tmp_path / "run"  # a copy: evaluation rewrites metrics.json, which the other tests read
    shutil.copytree(gpu_main_run.dir, run)
    trained = gpu_main_run.metrics

    proc = run_cli("s3dgs.eval", run, "--device", GPU, "--frames", 8, "--fps", 8, env=env, cwd=tmp_path)
    assert f"wrote {run / 'metrics.json'} and {run / 'path.mp4'}" in proc.stdout
    m = json.loads((run / "metrics.json").read_text())
    assert m["steps"] == MAIN_STEPS and m["device"] == GPU  # training's facts kept
    assert m["train_seconds"] == trained["train_seconds"] and m["num_gaussians"] == trained["num_gaussians"]
    for split in ("test", "train"):
        assert m[split]["psnr"] == pytest.approx(trained[split]["psnr"], abs=1e-3)
        assert m[split]["ssim"] == pytest.approx(trained[split]["ssim"], abs=1e-5)
        assert m[split]["depth_abs_rel"] == pytest.approx(trained[split]["depth_abs_rel"], abs=1e-5)
    cap = cv2.VideoCapture(str(run / "path.mp4"))
    frames = []
    while (f := cap.read())[0]:
        frames.append(f[1])
    assert len(frames) == 8 and frames[0].shape == (60, 80, 3)
    assert np.abs(frames[0].astype(int) - frames[-1]).mean() > 1  # the camera moves

    run_cli("s3dgs.eval", run, "--device", "cpu", "--no-video", env=env, cwd=tmp_path)
    on_cpu = json.loads((run / "metrics.json").read_text())
    for split in ("test", "train"):  # our rasterizer and gsplat's agree to 1e-4 per pixel
        assert on_cpu[split]["psnr"] == pytest.approx(m[split]["psnr"], abs=0.05), split
        assert on_cpu[split]["depth_abs_rel"] == pytest.approx(m[split]["depth_abs_rel"], rel=0.01), split


def test_every_export_format_reads_back_as_the_trained_gaussians(gpu_main_run, env, tmp_path):
    src = gaussians_from_ply(gpu_main_run.dir / "point_cloud.ply")
    n = len(src["means"])
    assert n == gpu_main_run.metrics["num_gaussians"] and src["shN"].shape == (n, 15, 3)
    outs = {}
    for fmt, name in (("ply", "m.ply"), ("splat", "m.splat"), ("ply-compressed", "m.compressed.ply")):
        outs[fmt] = tmp_path / name
        proc = run_cli("s3dgs.export", gpu_main_run.dir, "--format", fmt, "-o", outs[fmt], env=env, cwd=tmp_path)
        assert proc.stdout.strip() == f"wrote {outs[fmt]}"

    back = gaussians_from_ply(outs["ply"])
    for k in src:  # float32 copied from file to file: exact
        assert torch.equal(back[k], src[k]), k
    assert outs["splat"].stat().st_size == 32 * n  # one 32-byte record per Gaussian
    ply = PlyData.read(str(outs["ply-compressed"]))
    kept = int((torch.sigmoid(src["opacities"]) > 1 / 255).sum())
    assert ply["vertex"].count == kept == ply["sh"].count and kept > 0.5 * n
    assert len(ply["sh"].properties) == 45  # SH degree 3 kept
