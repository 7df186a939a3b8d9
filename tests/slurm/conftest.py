"""A real one-node Slurm on 127.0.0.1 (tools/slurm_local.sh), brought up once per session.

Where it cannot run (not root, no apt-get, packages not installable, or ``S3DGS_SKIP_SLURM=1``) the tests
that use it skip with the script's reason. A cluster this session started is stopped at the end.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "tools" / "slurm_local.sh"
UNAVAILABLE = 3   # slurm_local.sh's exit status for "cannot run here"
sys.path.insert(0, str(REPO_ROOT / "tests" / "preprocess"))  # tiny_depth_model, depth_test_images


def _script(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def slurm() -> None:
    """A running local Slurm node, or a skip with the reason it cannot be brought up here."""
    if os.environ.get("S3DGS_SKIP_SLURM") == "1":
        pytest.skip("S3DGS_SKIP_SLURM=1: local Slurm tests not run")
    was_up = _script("status", timeout=30).returncode == 0
    proc = _script("start", timeout=600)   # apt-get install on a fresh machine included
    if proc.returncode == UNAVAILABLE:
        pytest.skip(f"no local Slurm: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, f"tools/slurm_local.sh start failed:\n{proc.stdout}\n{proc.stderr}"
    yield
    if not was_up:
        _script("stop", timeout=60)


@pytest.fixture
def wait_job():
    """``wait_job(job_id, timeout) -> {array task id: scontrol's fields}`` once every task has left the queue
    (``JobState``, ``ExitCode`` "exit:signal", ``StartTime``, ``EndTime``...).

    Polls squeue (``sbatch --wait`` polls only every 10 s or so). Without accounting, finished jobs stay
    visible to ``scontrol`` for MinJobAge (60 s in slurm_local.sh), which is where states and exit codes come from.
    """
    def wait(job_id: str, timeout: float) -> dict[str, dict[str, str]]:
        deadline = time.monotonic() + timeout
        while subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True).stdout.strip():
            if time.monotonic() > deadline:
                queue = subprocess.run(["squeue"], capture_output=True, text=True).stdout
                subprocess.run(["scancel", job_id])
                raise AssertionError(f"job {job_id} not finished after {timeout} s:\n{queue}")
            time.sleep(0.5)
        shown = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True,
                               check=True).stdout
        fields = [dict(re.findall(r"(\w+)=(\S+)", ln)) for ln in shown.splitlines() if ln.strip()]
        return {f.get("ArrayTaskId", f["JobId"]): f for f in fields}
    return wait
