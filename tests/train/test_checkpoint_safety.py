"""ckpt.pt holds tensors and plain data only: it loads with ``torch.load(weights_only=True)``, the global RNG
states round-trip through it, and a file holding any other Python object is refused without running it."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from s3dgs.checkpoint import read_checkpoint, rng_states, set_rng_states
from s3dgs.errors import TrainError


class RunsCode:
    """Unpickling this creates ``path``: proof that a checkpoint's pickled objects ran."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (str(self.path),)


def test_a_checkpoint_with_an_arbitrary_object_is_refused_without_running_it(tmp_path):
    ran = tmp_path / "code_ran"
    torch.save({"params": {"means": torch.zeros(2, 3)}, "step": 1, "extra": RunsCode(ran)}, tmp_path / "ckpt.pt")
    with pytest.raises(TrainError) as err:
        read_checkpoint(tmp_path / "ckpt.pt")
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{tmp_path / 'ckpt.pt'}: holds Python objects besides tensors")
    assert message.endswith("start a new run (resume=false)")
    assert not ran.exists()


def test_rng_states_are_plain_data_and_restore_every_generator(tmp_path):
    np.random.seed(7)
    torch.manual_seed(7)
    np.random.standard_normal()  # leave a cached Gaussian in NumPy's state
    states = rng_states(torch.device("cpu"))
    expected = (np.random.random(3), np.random.standard_normal(), torch.rand(3))
    torch.save({"params": {}, "rng": states}, tmp_path / "ckpt.pt")
    loaded = torch.load(tmp_path / "ckpt.pt", weights_only=True)  # no NumPy arrays or other pickled objects
    np.random.seed(0)
    torch.manual_seed(0)
    set_rng_states(loaded["rng"], torch.device("cpu"))
    again = (np.random.random(3), np.random.standard_normal(), torch.rand(3))
    assert np.array_equal(again[0], expected[0]) and again[1] == expected[1]
    assert torch.equal(again[2], expected[2])
