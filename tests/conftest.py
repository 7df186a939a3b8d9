"""Fixtures shared by every test area. Area fixtures live in tests/<area>/conftest.py."""

import os
import signal
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "helpers"))  # video_depth_testing, video_to_scene_testing


@pytest.fixture(autouse=True, scope="session")
def ctrl_c_reaches_the_tests():
    """The Ctrl-C tests send SIGINT to our CLIs and to the trainer in this process. Run as a background job
    (``nohup pytest &``), the suite starts with SIGINT ignored, and the CLIs it starts would inherit that:
    restore Python's handler so that they all see an ordinary Ctrl-C."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def repo_env(tmp_path) -> dict[str, str]:
    """Environment for subprocess runs of our CLIs: this checkout importable, nothing reaches the internet,
    temp files kept inside the test's folder."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", GRADIO_ANALYTICS_ENABLED="False",
               TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.pop("HF_TOKEN", None)
    env.pop("HF_HUB_TOKEN", None)
    tmp = tmp_path / "_tmp"
    tmp.mkdir(exist_ok=True)
    env["TMPDIR"] = str(tmp)
    return env


@pytest.fixture
def python() -> str:
    """The interpreter running the tests (the project's virtualenv)."""
    return sys.executable
