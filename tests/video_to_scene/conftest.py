"""Fixtures for the video-to-scene tests: a synthetic clip with known poses, made into a dataset once."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from video_depth_testing import save_random_checkpoint
from video_to_scene_testing import write_clip

REPO_ROOT = Path(__file__).resolve().parents[2]
POSES, WIDTH, HEIGHT, VIDEO_FPS = 24, 320, 240, 4.0  # 48 video frames, each pose blurred then sharp
DEPTH_SIZE = 28  # tiny VDA network input: the priors' numbers are random, their files and sizes are real


@pytest.fixture(scope="module")
def module_env(tmp_path_factory) -> dict[str, str]:
    """Like ``repo_env``, for module-scoped subprocesses: this checkout importable, offline, temp files inside."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1", NUMBA_NUM_THREADS="2",
               TMPDIR=str(tmp_path_factory.mktemp("tmp")))
    return env


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """``(mp4 path, source indices of the sharp frames [24], true camera centres [24, 3])``."""
    path = tmp_path_factory.mktemp("clip") / "walk.mp4"
    sharp, centres = write_clip(path, POSES, WIDTH, HEIGHT, VIDEO_FPS)
    return path, sharp, centres


@pytest.fixture(scope="module")
def vda_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vda_checkpoints")
    save_random_checkpoint(root, "vits", seed=0)
    return root


def cli_args(clip_path: Path, out: Path, vda_root: Path, *extra: str) -> list[str]:
    """The command the tests run: sequential matching (fewer pairs than exhaustive on 24 frames, and the path
    long clips take), tiny VDA priors."""
    return [sys.executable, "-m", "preprocess.video_to_scene", str(clip_path), str(out), "--fps", "2",
            "--matcher", "sequential", "--overlap", "6", "--loop-every", "6", "--checkpoint-root", str(vda_root),
            "--input-size", str(DEPTH_SIZE), "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def scene(clip, vda_root, module_env, tmp_path_factory):
    """The clip made into a dataset (undistorted) by the real CLI; returns ``(out dir, scene.json, run)``."""
    out = tmp_path_factory.mktemp("scene") / "walk"
    run = subprocess.run(cli_args(clip[0], out, vda_root, "--undistort"), env=module_env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return out, json.loads((out / "scene.json").read_text()), run
