"""Building the model from checkpoint files in the official layout."""

import numpy as np
import pytest
import torch

from preprocess.video_depth import CheckpointError, build_model, infer_video_depth
from preprocess.video_depth.testing import synthetic_clip


def test_tiny_checkpoint_loads_and_predicts(tiny_vda_checkpoint):
    assert tiny_vda_checkpoint.name == "video_depth_anything_vits.pth"
    model = build_model("vits", tiny_vda_checkpoint)
    assert len(model.state_dict()) == 351
    x = torch.from_numpy(np.linspace(-1, 1, 2 * 3 * 28 * 42, dtype=np.float32)).reshape(1, 2, 3, 28, 42)
    with torch.no_grad():
        depth = model(x)
    assert depth.shape == (1, 2, 28, 42)
    assert torch.isfinite(depth).all() and depth.min() >= 0 and depth.std() > 0
    out = infer_video_depth(model, synthetic_clip(3, 20, 30), input_size=28)
    assert out.shape == (3, 20, 30) and out.dtype == np.float32


def test_wrong_keys_fail_with_a_clear_message(tiny_vda_checkpoint, tmp_path):
    state = torch.load(tiny_vda_checkpoint, weights_only=True)
    del state["head.scratch.output_conv1.weight"]
    state["extra.weight"] = torch.zeros(1)
    bad = tmp_path / "video_depth_anything_vits.pth"
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match=r"1 missing keys \(head.scratch.output_conv1.weight\); "
                                              r"1 unexpected keys \(extra.weight\)"):
        build_model("vits", bad)
