"""Fixtures for the trainer tests: the example scene generated once per session, and a runner for the
real Hydra app in a subprocess."""

import shutil
import subprocess
from pathlib import Path

import pytest

from s3dgs import example


@pytest.fixture(scope="session")
def cache_home(tmp_path_factory) -> Path:
    """An XDG cache folder already holding the generated example scene (what ``data_dir=null`` uses)."""
    home = tmp_path_factory.mktemp("xdg_cache")
    example.write_example(home / "s3dgs" / example.VERSION)
    return home


@pytest.fixture(scope="session")
def example_dir(cache_home) -> Path:
    return cache_home / "s3dgs" / example.VERSION


@pytest.fixture
def train_env(repo_env, cache_home) -> dict[str, str]:
    return repo_env | {"XDG_CACHE_HOME": str(cache_home), "NUMBA_NUM_THREADS": "2"}


@pytest.fixture
def run_train(python, train_env, tmp_path):
    """Run ``python -m s3dgs.train ARGS`` from a folder outside the checkout; returns the CompletedProcess."""
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([python, "-m", "s3dgs.train", *args], cwd=cwd, env=train_env, capture_output=True,
                              text=True, timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-3000:]}\nSTDERR:\n{proc.stderr[-3000:]}")
        return proc
    return run


@pytest.fixture
def small_copy(example_dir, tmp_path) -> Path:
    """A writable copy of the example scene (tests break files in it)."""
    dst = tmp_path / "scene"
    shutil.copytree(example_dir, dst)
    return dst
