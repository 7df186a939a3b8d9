"""The one device resolver (preprocess.devices) and the one callable-module rule (preprocess.callable_module)."""

import pytest
import torch

from preprocess import generate_depth, import_depth
from preprocess.devices import DeviceError, pick_device
from preprocess.errors import S3dgsError


def test_pick_device_names_and_errors(monkeypatch):
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device() == pick_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="'tpu': use auto, cpu, cuda or cuda:N"):
        pick_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    with pytest.raises(S3dgsError, match="cuda:1: torch .* sees no CUDA GPU"):
        pick_device("cuda:1")


def test_the_depth_modules_are_callable_as_their_function():
    assert callable(generate_depth) and callable(import_depth)
    assert generate_depth.__name__ == "preprocess.generate_depth"
    with pytest.raises(S3dgsError):
        import_depth("/nonexistent/depths", "/nonexistent/out", kind="depth")
