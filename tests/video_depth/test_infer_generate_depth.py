"""``generate_depth --backend vda``: an image folder as one sequence, one value range, resume by windows."""

import shutil
import subprocess

import cv2
import numpy as np
import pytest

from preprocess import generate_depth
from preprocess.depth_png import DepthMeta, read_depth_png
from preprocess.video_depth import build_model, infer_video_depth
from preprocess.video_depth import inference
from video_depth_testing import synthetic_clip

pytestmark = pytest.mark.usefixtures("single_thread")
N, H, W, SIZE = 26, 20, 28, 28  # two windows; network input 28x42


@pytest.fixture(scope="module")
def frames():
    return synthetic_clip(N, H, W, seed=11)


@pytest.fixture(scope="module")
def expected(frames, tiny_vda_checkpoint):
    return infer_video_depth(build_model("vits", tiny_vda_checkpoint), frames, input_size=SIZE)


@pytest.fixture
def images(tmp_path, frames):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"frame_{i:03d}.png"), frame[..., ::-1])
    return folder


@pytest.fixture
def checkpoint_root(tmp_path, tiny_vda_checkpoint):
    root = tmp_path / "checkpoints"
    root.mkdir()
    shutil.copy(tiny_vda_checkpoint, root)
    return root


# Outputs made in another process (another thread count, another CPU's SIMD kernels) sum float32 in another
# order: between AVX-512 and ATen's default kernels the depths differ by up to 1.7e-6 of their range (measured).
# 1e-5 of the range leaves 6x margin and is below one 16-bit step (1.5e-5), so a wrong window, normalisation or
# level (all at least a step) still fails.
DRIFT = 1e-5


def check_outputs(out, expected):
    meta = DepthMeta.load(out)
    assert (meta.backend, meta.model, meta.kind, meta.units) == ("vda", "video_depth_anything_vits", "inverse_depth",
                                                                 None)
    assert meta.extra["normalization"] == "per_sequence" and meta.extra["input_size"] == SIZE
    drift = DRIFT * float(np.ptp(expected))
    assert len({(r["min"], r["max"]) for r in meta.images.values()}) == 1  # one value range for the sequence
    for r in meta.images.values():
        assert (r["min"], r["max"]) == pytest.approx((float(expected.min()), float(expected.max())), abs=drift)
    step = (expected.max() - expected.min()) / 65535
    for i in range(N):
        depth = meta.to_float(f"frame_{i:03d}", read_depth_png(out / f"frame_{i:03d}.png"))
        assert np.abs(depth - expected[i]).max() <= step / 2 + 2 * drift  # rounding, then drift of value and range
    assert not (out / ".vda_windows").exists()


def test_cli_writes_one_sequence_with_one_range(images, checkpoint_root, expected, tmp_path, repo_env, python):
    out = tmp_path / "out"
    cmd = [python, "-m", "preprocess.generate_depth", str(images), str(out), "--backend", "vda", "--model", "vits",
           "--checkpoint-root", str(checkpoint_root), "--input-size", str(SIZE), "--quiet"]
    # ATen's plain kernels instead of this CPU's widest SIMD ones: the float drift a user's other CPU gives
    run = subprocess.run(cmd, env=repo_env | {"ATEN_CPU_CAPABILITY": "default"}, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    check_outputs(out, expected)


def test_interrupted_run_resumes_by_whole_windows(images, checkpoint_root, expected, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real_run_window = inference.run_window
    calls = []

    def interrupted_after_first_window(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt  # Ctrl-C while the second window computes
        calls.append(1)
        return real_run_window(*args, **kwargs)

    monkeypatch.setattr(inference, "run_window", interrupted_after_first_window)
    with pytest.raises(KeyboardInterrupt):
        generate_depth(images, out, backend="vda", model="vits", checkpoint_root=str(checkpoint_root),
                       input_size=SIZE, quiet=True)
    assert sorted(p.name for p in (out / ".vda_windows").iterdir()) == ["fingerprint.json", "window_00000.npy"]
    assert not list(out.glob("*.png"))

    monkeypatch.setattr(inference, "run_window", real_run_window)
    summary = generate_depth(images, out, backend="vda", model="vits", checkpoint_root=str(checkpoint_root),
                             input_size=SIZE, quiet=True)
    assert summary.ok and summary.done == N and summary.model_calls == 1  # only the second window
    check_outputs(out, expected)
    again = generate_depth(images, out, backend="vda", model="vits", checkpoint_root=str(checkpoint_root),
                           input_size=SIZE, quiet=True)
    assert again.skipped == N and again.model_calls == 0


def test_frame_of_another_size_is_reported_and_left_out(images, checkpoint_root, tmp_path):
    cv2.imwrite(str(images / "frame_999.png"), np.zeros((H + 2, W, 3), np.uint8))
    summary = generate_depth(images, tmp_path / "out", backend="vda", model="vits",
                             checkpoint_root=str(checkpoint_root), input_size=SIZE, quiet=True)
    assert summary.done == N and list(summary.failed) == ["frame_999.png"]
    assert "28x22 differs from the sequence's 28x20" in summary.failed["frame_999.png"]


def test_missing_checkpoint_is_one_line(images, tmp_path, repo_env, python):
    cmd = [python, "-m", "preprocess.generate_depth", str(images), str(tmp_path / "out"), "--backend", "vda",
           "--model", "metric_vitl", "--checkpoint-root", str(tmp_path / "empty")]
    run = subprocess.run(cmd, env=repo_env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert "metric_video_depth_anything_vitl.pth: checkpoint metric_video_depth_anything_vitl not found" in run.stderr
    assert "python -m preprocess.download_weights --model metric_vitl" in run.stderr
    assert not (tmp_path / "out").exists()
