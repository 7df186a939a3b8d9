"""Fixtures for the video-depth tests: a tiny random checkpoint in the official layout."""

from pathlib import Path

import pytest

from video_depth_testing import save_random_checkpoint


@pytest.fixture(scope="session")
def tiny_vda_checkpoint(tmp_path_factory) -> Path:
    """``video_depth_anything_vits.pth`` with the vits architecture's official keys and deterministic random
    weights (seed 0), in a temp checkpoint root. Load it with ``build_model("vits", path)``."""
    return save_random_checkpoint(tmp_path_factory.mktemp("vda_checkpoints"), "vits", seed=0)


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for a module: the test models are tiny, and two threads on a shared 2-core machine
    spend most of their time synchronising (7x slower measured)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
