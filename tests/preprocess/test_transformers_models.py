"""Every supported transformers depth-estimation family, each as a tiny random-weight model built from its config
class and saved like a hub checkpoint, run through the real generate_depth on two small images."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import transformers as tf
from transformers.utils import is_torchvision_available

from depth_test_images import write_rgb
from preprocess import generate_depth
from preprocess.backends import BackendError
from preprocess.backends.hf_transformers import FAMILIES
from preprocess.depth_png import DepthMeta, read_depth_png
from tiny_depth_model import save_tiny_depth_anything

SIZES = {"a": (48, 64), "b": (40, 60)}  # image -> (height, width); unequal, so each is post-processed to its own
NO_TORCHVISION = "transformers' processor or post-processing of this family needs torchvision, not installed"


def tiny_dinov2(image_size: int, patch_size: int = 14) -> tf.Dinov2Config:
    """A two-layer, 16-wide DINOv2 backbone with two output stages."""
    return tf.Dinov2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                           image_size=image_size, patch_size=patch_size, out_features=["stage1", "stage2"],
                           reshape_hidden_states=False)


def save(model: torch.nn.Module, processor, dst: Path) -> Path:
    model.save_pretrained(dst)
    processor.save_pretrained(dst)
    return dst


def dpt(dst: Path) -> Path:
    """DPT/MiDaS with its own ViT (square 32 x 32 input, as the hub's DPT processors resize to a square)."""
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    config = tf.DPTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                          image_size=32, patch_size=16, backbone_out_indices=[0, 1], neck_hidden_sizes=[8, 16],
                          reassemble_factors=[2, 1], fusion_hidden_size=8, head_hidden_size=4)
    return save(tf.DPTForDepthEstimation(config), DPTImageProcessorPil(size={"height": 32, "width": 32}), dst)


def glpn(dst: Path) -> Path:
    from transformers.models.glpn.image_processing_pil_glpn import GLPNImageProcessorPil

    config = tf.GLPNConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 8, 16, 16], num_attention_heads=[1, 1, 1, 1],
                           mlp_ratios=[2, 2, 2, 2], decoder_hidden_size=8, max_depth=10)
    return save(tf.GLPNForDepthEstimation(config), GLPNImageProcessorPil(), dst)


def zoedepth(dst: Path) -> Path:
    """ZoeDepth on a DINOv2 backbone (the sizes of transformers' own ZoeDepth tests)."""
    from transformers import ZoeDepthImageProcessor

    backbone = tf.Dinov2Config(hidden_size=4, num_hidden_layers=2, num_attention_heads=2, intermediate_size=8,
                               image_size=32, patch_size=16, out_features=["stage1", "stage2"],
                               reshape_hidden_states=False)
    config = tf.ZoeDepthConfig(backbone_config=backbone, neck_hidden_sizes=[2, 2], fusion_hidden_size=6,
                               bottleneck_features=6, num_out_features=[6, 6, 6, 6])
    processor = ZoeDepthImageProcessor(size={"height": 32, "width": 32}, ensure_multiple_of=16)
    return save(tf.ZoeDepthForDepthEstimation(config), processor, dst)


def depth_pro(dst: Path) -> Path:
    """Depth Pro with its field-of-view head (the sizes of transformers' own Depth Pro tests), 64 x 64 input."""
    from transformers import DepthProImageProcessor

    config = tf.DepthProConfig(
        patch_size=16, fusion_hidden_size=16, intermediate_hook_ids=[1, 0], intermediate_feature_dims=[10, 8],
        scaled_images_ratios=[0.5, 1.0], scaled_images_overlap_ratios=[0.0, 0.2], scaled_images_feature_dims=[12, 12],
        image_model_config={"model_type": "dinov2", "num_hidden_layers": 2, "hidden_size": 16,
                            "num_attention_heads": 1, "patch_size": 4},
        patch_model_config={"model_type": "vit", "num_hidden_layers": 2, "hidden_size": 24,
                            "num_attention_heads": 2, "patch_size": 6},
        fov_model_config={"model_type": "vit", "num_hidden_layers": 2, "hidden_size": 32,
                          "num_attention_heads": 4, "patch_size": 8},
        use_fov_model=True)
    return save(tf.DepthProForDepthEstimation(config), DepthProImageProcessor(size={"height": 64, "width": 64}), dst)


def prompt_depth_anything(dst: Path) -> Path:
    """Metric Prompt Depth Anything (as the hub's checkpoints) on a tiny DINOv2, 42 px input."""
    from transformers.models.prompt_depth_anything.image_processing_pil_prompt_depth_anything import (
        PromptDepthAnythingImageProcessorPil)

    config = tf.PromptDepthAnythingConfig(backbone_config=tiny_dinov2(42), reassemble_hidden_size=16,
                                          reassemble_factors=[2, 1], neck_hidden_sizes=[8, 16], fusion_hidden_size=8,
                                          head_hidden_size=4, depth_estimation_type="metric", max_depth=1)
    processor = PromptDepthAnythingImageProcessorPil(size={"height": 42, "width": 42}, keep_aspect_ratio=True,
                                                     ensure_multiple_of=14)
    return save(tf.PromptDepthAnythingForDepthEstimation(config), processor, dst)


# family -> (builder, kind, relative, units, needs torchvision)
CASES = {
    "depth_anything_relative": (save_tiny_depth_anything, "inverse_depth", True, None, False),
    "depth_anything_metric": (lambda d: save_tiny_depth_anything(d, metric=True), "depth", False, "m", False),
    "dpt": (dpt, "inverse_depth", True, None, False),
    "glpn": (glpn, "depth", False, "m", False),
    "zoedepth": (zoedepth, "depth", False, "m", True),
    "depth_pro": (depth_pro, "depth", False, "m", True),
    "prompt_depth_anything": (prompt_depth_anything, "depth", False, "m", False),
}


def images(folder: Path) -> Path:
    folder.mkdir()
    for seed, (name, (h, w)) in enumerate(SIZES.items()):
        write_rgb(folder / f"{name}.png", h=h, w=w, seed=seed)
    return folder


def prompts(folder: Path) -> tuple[float, float]:
    """A 12 x 16 sensor depth map per image: ``a`` a millimetre PNG with a hole (0), ``b`` a millimetre .npy; returns
    the valid range in metres."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    a = rng.integers(800, 3000, (12, 16)).astype(np.uint16)
    a[2:5, 3:7] = 0
    cv2.imwrite(str(folder / "a.png"), a)
    b = rng.uniform(900, 2500, (12, 16)).astype(np.float32)
    np.save(folder / "b.npy", b)
    return min(a[a > 0].min(), b.min()) / 1000, max(a.max(), b.max()) / 1000


@pytest.mark.parametrize("case", list(CASES))
def test_family_runs_with_its_convention(tmp_path, case):
    build, kind, relative, units, needs_torchvision = CASES[case]
    if needs_torchvision and not is_torchvision_available():
        pytest.skip(NO_TORCHVISION)
    torch.manual_seed(0)
    model = build(tmp_path / "model")
    src = images(tmp_path / "in")
    prompt = {}
    if case == "prompt_depth_anything":
        lo, hi = prompts(tmp_path / "sensor")
        prompt = {"prompt_depth": tmp_path / "sensor"}
    summary = generate_depth(src, tmp_path / "out", model=str(model), device="cpu", batch_size=2, quiet=True, **prompt)
    assert summary.ok and summary.done == 2, summary.failed
    meta = DepthMeta.load(tmp_path / "out")
    assert (meta.kind, meta.relative, meta.units) == (kind, relative, units)
    assert meta.extra["model_type"] == tf.AutoConfig.from_pretrained(model).model_type
    for key, size in SIZES.items():
        png = read_depth_png(tmp_path / "out" / f"{key}.png")
        assert png.shape == size
        depth = meta.to_float(key, png)
        assert np.isfinite(depth).all()
        if kind == "depth":
            assert depth.min() >= 0
    if case == "depth_pro":
        assert meta.extra["per_image"] == ["field_of_view_deg", "focal_px"]
        for key, (_, w) in SIZES.items():
            fov, focal = meta.images[key]["field_of_view_deg"], meta.images[key]["focal_px"]
            assert 0 < fov < 180 and focal == pytest.approx(0.5 * w / np.tan(np.radians(fov) / 2), rel=1e-4)
    if case == "prompt_depth_anything":  # the prompt's metric range, filled holes included, sets the output's
        assert meta.extra["prompt_scale"] == 1e-3 and meta.images["b"]["prompt"] == "b.npy"
        for key in SIZES:
            depth = meta.to_float(key, read_depth_png(tmp_path / "out" / f"{key}.png"))
            assert lo - 1e-3 <= depth.min() and depth.max() <= hi + 1e-3


def test_prompt_model_without_a_prompt_and_prompt_for_another_model_refused(tmp_path, tiny_model):
    model = prompt_depth_anything(tmp_path / "model")
    src = images(tmp_path / "in")
    with pytest.raises(BackendError, match=r"Prompt Depth Anything needs a metric prompt depth per image; pass "
                                           r"--prompt-depth DIR"):
        generate_depth(src, tmp_path / "out", model=str(model), device="cpu", quiet=True)
    prompts(tmp_path / "sensor")
    with pytest.raises(BackendError, match="Depth Anything V1/V2 takes no prompt depth; drop --prompt-depth"):
        generate_depth(src, tmp_path / "out", model=str(tiny_model), device="cpu", quiet=True,
                       prompt_depth=tmp_path / "sensor")
    assert not (tmp_path / "out").exists()


def test_image_without_its_prompt_fails_alone(tmp_path):
    model = prompt_depth_anything(tmp_path / "model")
    src = images(tmp_path / "in")
    prompts(tmp_path / "sensor")
    (tmp_path / "sensor" / "b.npy").unlink()
    summary = generate_depth(src, tmp_path / "out", model=str(model), device="cpu", quiet=True,
                             prompt_depth=tmp_path / "sensor")
    assert summary.done == 1 and list(summary.failed) == ["b.png"]
    assert summary.failed["b.png"] == f"{src / 'b.png'}: no prompt depth file named like it in {tmp_path / 'sensor'}"


def test_unknown_model_type_is_one_line_naming_the_families(tmp_path):
    model = tmp_path / "vit"
    tf.ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8).save_pretrained(model)
    with pytest.raises(BackendError) as e:
        generate_depth(images(tmp_path / "in"), tmp_path / "out", model=str(model), device="cpu", quiet=True)
    assert str(e.value) == (f"{model}: model type 'vit' is not a depth-estimation family this reads; supported: "
                            + ", ".join(f"{k} ({f.name})" for k, f in FAMILIES.items()))
    assert "\n" not in str(e.value) and "depth_pro (Depth Pro)" in str(e.value)


def test_depth_pro_without_its_field_of_view_head_refused(tmp_path):
    model = tmp_path / "depth_pro"
    tf.DepthProConfig(use_fov_model=False).save_pretrained(model)  # the config is all it reads
    with pytest.raises(BackendError, match=r"Depth Pro with use_fov_model=false predicts no field of view, so its "
                                           r"depth is not metric"):
        generate_depth(images(tmp_path / "in"), tmp_path / "out", model=str(model), device="cpu", quiet=True)


@pytest.mark.skipif(is_torchvision_available(), reason="checks the message given without torchvision")
def test_family_needing_torchvision_says_so_without_it(tmp_path):
    model = tmp_path / "zoe"
    tf.ZoeDepthConfig(backbone_config=tiny_dinov2(32, 16)).save_pretrained(model)  # the config is all it reads
    with pytest.raises(BackendError, match=r"transformers' ZoeDepth image processor needs torchvision; pip install "
                                           r"the torchvision build matching torch"):
        generate_depth(images(tmp_path / "in"), tmp_path / "out", model=str(model), device="cpu", quiet=True)
