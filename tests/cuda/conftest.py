"""Fixtures for the CUDA checks: the built-in example scene written once by its CLI, and training runs of the real
``python -m s3dgs.train`` made once per session and shared by the tests that read them.

Every test module here skips itself (module-level ``pytestmark``) when ``torch.cuda.is_available()`` is false, so
none of these fixtures runs on a machine without a GPU. ``benchmarks/gpu_check.sh`` runs the folder and builds
gsplat's CUDA extension before it (a cold JIT build takes minutes; the timeouts below leave room for it anyway).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
GPU = "cuda"  # the device the runs under test train on
GPU_BACKEND = "gsplat"  # the rasterizer that device uses (backend=auto picks it for CUDA tensors)
MAIN_STEPS = 1000  # the main job's length: its CPU figures are in docs/performance.md
SHORT_STEPS = 300  # runs compared with a CPU run of the same length on the same machine
TIMEOUT = 900  # seconds per CLI call: a first gsplat call may still compile its CUDA extension


def cli_env(tmp: Path) -> dict[str, str]:
    """Environment for subprocess runs of our CLIs: this checkout importable, nothing reaches the internet, temp files
    in ``tmp``. ``XDG_CACHE_HOME`` is left alone: torch keeps gsplat's compiled extension under it."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1",
               TMPDIR=str(tmp))
    return env


def run_cli(module: str, *args: Any, env: dict[str, str], cwd: Path, ok: tuple[int, ...] = (0,),
            timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` from ``cwd``; fails the test (with the output's end) unless it exits with one of
    ``ok``."""
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode not in ok:
        raise AssertionError(f"python -m {module} {' '.join(map(str, args))}: exit {proc.returncode}\n"
                             f"STDOUT:\n{proc.stdout[-3000:]}\nSTDERR:\n{proc.stderr[-5000:]}")
    return proc


@dataclass
class Run:
    """A finished training run: its folder and the metrics.json it wrote (read right after training: later tests may
    re-evaluate into the folder)."""

    dir: Path
    metrics: dict[str, Any]


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cuda_check")


@pytest.fixture(scope="session")
def env(workdir) -> dict[str, str]:
    tmp = workdir / "tmp"
    tmp.mkdir(exist_ok=True)
    return cli_env(tmp)


@pytest.fixture(scope="session")
def example_dir(workdir, env) -> Path:
    """The built-in example (24 views of 80x60, sparse points, depth priors in ``depth/``, exact depth in
    ``gt_depth/``) written by ``python -m s3dgs.example``."""
    out = workdir / "example"
    run_cli("s3dgs.example", out, env=env, cwd=workdir)
    return out


@pytest.fixture(scope="session")
def train(workdir, env, example_dir):
    """``train(name, *overrides) -> Run``: ``python -m s3dgs.train data_dir=<example> OVERRIDES`` into
    ``<workdir>/<name>`` (the depth priors in the example's ``depth/`` are found there: ``lambda_depth=0.1``, the
    anchored loss)."""

    def run(name: str, *overrides: str) -> Run:
        run_dir = workdir / name
        run_cli("s3dgs.train", f"data_dir={example_dir}", *overrides, f"hydra.run.dir={run_dir}", env=env,
                cwd=workdir)
        return Run(run_dir, json.loads((run_dir / "metrics.json").read_text()))
    return run


@pytest.fixture(scope="session")
def gpu_main_run(train) -> Run:
    """The main job on the GPU: the defaults (MCMC, anchored depth loss, 1000 steps)."""
    return train("gpu_mcmc_main", f"device={GPU}", f"steps={MAIN_STEPS}")


@pytest.fixture(scope="session")
def short_runs(train):
    """``short_runs(device, strategy) -> Run``: ``SHORT_STEPS`` steps, made once per (device, strategy)."""
    made: dict[tuple[str, str], Run] = {}

    def get(device: str, strategy: str) -> Run:
        if (device, strategy) not in made:
            made[device, strategy] = train(f"{device}_{strategy}_{SHORT_STEPS}", f"device={device}",
                                           f"strategy={strategy}", f"steps={SHORT_STEPS}", "log.tensorboard=false")
        return made[device, strategy]
    return get
