"""Fixtures for the preprocess tests: one loopback fake Space per session, one tiny Depth Anything model."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # fake_depth_space, tiny_depth_model, depth_test_images


@pytest.fixture(scope="session")
def fake_space_url(tmp_path_factory) -> str:
    """URL of a real Gradio server on 127.0.0.1 that imitates the Depth Anything V2 Space."""
    tmp = tmp_path_factory.mktemp("fake_space")
    env = dict(os.environ, GRADIO_TEMP_DIR=str(tmp / "gradio"), TMPDIR=str(tmp), HF_HUB_OFFLINE="1",
               HF_HUB_DISABLE_TELEMETRY="1", GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, str(HERE / "fake_depth_space.py")], stdout=subprocess.PIPE,
                            text=True, env=env)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        assert ready, "fake Space did not print its URL within 120 s"
        line = proc.stdout.readline().strip()
        assert line.startswith("FAKE_SPACE_URL="), f"fake Space did not start: {line!r}"
        yield line.split("=", 1)[1]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """Folder of a tiny random relative Depth Anything model, written with save_pretrained."""
    from tiny_depth_model import save_tiny_depth_anything

    return save_tiny_depth_anything(tmp_path_factory.mktemp("tiny_da") / "model")


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """In-process runs stay offline and have no token to send."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_TOKEN", raising=False)


@pytest.fixture
def own_tmp(monkeypatch, tmp_path) -> Path:
    """A fresh TMPDIR for this test (tempfile and subprocesses), to check nothing is left behind in it."""
    import tempfile

    tmp = tmp_path / "_tmp"
    tmp.mkdir(exist_ok=True)
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp
