"""Building the model from checkpoint files in the official layout (keys, shapes, strict loading)."""

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from preprocess.video_depth import CheckpointError, VideoDepthAnything, build_model, checkpoint_filename, load_model
from preprocess.weights import WeightsError
from video_depth_testing import save_random_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("encoder,n_keys", [("vits", 351), ("vitb", 351), ("vitl", 519)])
def test_layout_is_the_official_one(encoder, n_keys):
    """Keys, order and shapes equal those of the official model (recorded by tools/make_vda_golden.py)."""
    with gzip.open(DATA / "official_keys.json.gz") as f:
        official = json.load(f)[encoder]
    with torch.device("meta"):
        ours = {k: list(v.shape) for k, v in VideoDepthAnything(encoder).state_dict().items()}
    assert list(ours.items()) == list(official.items())
    assert len(ours) == n_keys


@pytest.mark.parametrize("encoder,dim", [("vits", 384), ("vitb", 768), ("vitl", 1024)])
def test_each_encoder_loads_from_an_official_file_and_runs(encoder, dim, tmp_path):
    # compact random weights: the official keys and shapes at a few MB instead of up to 1.5 GB
    path = save_random_checkpoint(tmp_path, encoder, seed=1, compact=True)
    assert path.name == f"video_depth_anything_{encoder}.pth"
    assert isinstance(torch.load(path, weights_only=True), dict)
    model = build_model(encoder, path)
    assert model.pretrained.pos_embed.shape == (1, 1370, dim)
    assert not model.training and model.encoder == encoder and not model.metric
    with torch.no_grad():
        depth = model(torch.randn(1, 3, 3, 28, 42, generator=torch.Generator().manual_seed(0)))
    assert depth.shape == (1, 3, 28, 42)
    assert torch.isfinite(depth).all() and (depth >= 0).all()


def test_tiny_checkpoint_is_the_seeded_vits_model(tiny_vda_checkpoint):
    assert tiny_vda_checkpoint.name == "video_depth_anything_vits.pth"
    state = torch.load(tiny_vda_checkpoint, weights_only=True)
    assert type(state).__name__ == "OrderedDict" and len(state) == 351
    assert all(v.dtype == torch.float32 for v in state.values())
    model = build_model("vits", tiny_vda_checkpoint)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    x = torch.from_numpy(np.linspace(-1, 1, 2 * 3 * 28 * 42, dtype=np.float32)).reshape(1, 2, 3, 28, 42)
    with torch.no_grad():
        depth = model(x)
    assert depth.shape == (1, 2, 28, 42) and depth.std() > 0.1


def test_metric_file_name_and_flag(tiny_vda_checkpoint, tmp_path):
    assert checkpoint_filename("vitl", metric=True) == "metric_video_depth_anything_vitl.pth"
    path = tmp_path / checkpoint_filename("vits", metric=True)
    shutil.copy(tiny_vda_checkpoint, path)
    assert build_model("vits", path, metric=True).metric


def _save_modified(source: Path, folder: Path, edit) -> Path:
    state = torch.load(source, weights_only=True)
    edit(state)
    path = folder / source.name
    torch.save(state, path)
    return path


def test_missing_and_extra_keys_fail_with_a_clear_message(tiny_vda_checkpoint, tmp_path):
    def edit(state):
        del state["head.scratch.output_conv1.weight"]
        state["extra.weight"] = torch.zeros(1)
    path = _save_modified(tiny_vda_checkpoint, tmp_path, edit)
    with pytest.raises(CheckpointError, match=r"video_depth_anything_vits.pth: not a Video Depth Anything vits "
                                              r"checkpoint: 1 missing keys \(head.scratch.output_conv1.weight\); "
                                              r"1 unexpected keys \(extra.weight\)"):
        build_model("vits", path)


def test_wrong_encoder_is_named(tiny_vda_checkpoint):
    with pytest.raises(CheckpointError, match="it looks like a vits checkpoint"):
        build_model("vitb", tiny_vda_checkpoint)


def test_wrong_shape_fails(tiny_vda_checkpoint, tmp_path):
    path = _save_modified(tiny_vda_checkpoint, tmp_path,
                          lambda s: s.__setitem__("pretrained.norm.weight", torch.ones(10)))
    with pytest.raises(CheckpointError, match=r"1 wrong shapes \(pretrained.norm.weight \(10,\) != \(384,\)\)"):
        build_model("vits", path)


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "video_depth_anything_vits.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read as a PyTorch checkpoint"):
        build_model("vits", bad)
    with pytest.raises(FileNotFoundError, match="nothing.pth does not exist"):
        build_model("vits", tmp_path / "nothing.pth")
    with pytest.raises(ValueError, match="unknown encoder 'vitg'"):
        build_model("vitg", bad)


def test_load_model_finds_checkpoints_through_the_weights_table(tiny_vda_checkpoint, tmp_path, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(tiny_vda_checkpoint, root / "metric_video_depth_anything_vits.pth")
    model = load_model("vits", metric=True, checkpoint_root=root, device="cpu")
    assert model.metric and model.encoder == "vits"
    monkeypatch.setenv("S3DGS_CHECKPOINT_ROOT", str(root))
    assert load_model("vits", metric=True).metric
    with pytest.raises(WeightsError) as info:
        load_model("vits", checkpoint_root=root)
    message = str(info.value)
    assert "\n" not in message
    assert f"{root / 'video_depth_anything_vits.pth'}: checkpoint video_depth_anything_vits not found" in message
    assert "python -m preprocess.download_weights --model vits" in message
