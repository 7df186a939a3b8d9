"""The transformers backend on a tiny random Depth Anything model loaded by path, like a hub model."""

import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from depth_test_images import write_rgb
from preprocess import generate_depth
from preprocess.backends import BackendError
from preprocess.depth_png import DepthMeta, read_depth_png
from tiny_depth_model import save_tiny_depth_anything


def reference_depth(model_dir, path) -> np.ndarray:
    """The model's own prediction for one image, upsampled by its processor's own post-processing."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    processor = AutoImageProcessor.from_pretrained(model_dir)
    model = AutoModelForDepthEstimation.from_pretrained(model_dir).eval()
    with Image.open(path) as im:  # the stored pixels, decoded independently of preprocess.images
        rgb = np.asarray(im.convert("RGB"))
    with torch.no_grad():
        out = model(**processor(images=rgb, return_tensors="pt"))
    return processor.post_process_depth_estimation(out, target_sizes=[rgb.shape[:2]])[0]["predicted_depth"].numpy()


def test_numbers_equal_the_models_own_output(tmp_path, tiny_model):
    src = tmp_path / "in"
    src.mkdir()
    write_rgb(src / "a.png", h=24, w=32, seed=1)
    write_rgb(src / "b.png", h=24, w=32, seed=2)                       # same size as a: batched with it
    write_rgb(src / "c.jpg", h=20, w=44, seed=3, exif_orientation=8)   # tag ignored: 44 wide, 20 high as stored
    Image.fromarray(np.random.default_rng(4).integers(0, 256, (30, 30), dtype=np.uint8), "L").save(src / "d.bmp")
    summary = generate_depth(src, tmp_path / "out", model=str(tiny_model), device="cpu", batch_size=2, quiet=True)
    assert summary.ok and summary.done == 4 and summary.model_calls == 3   # [a, b], [c], [d]
    meta = DepthMeta.load(tmp_path / "out")
    assert (meta.backend, meta.model, meta.kind, meta.units) == ("transformers", str(tiny_model), "inverse_depth", None)
    assert meta.extra["dtype"] == "float32" and meta.extra["normalization"] == "per_image"
    for name in ("a.png", "b.png", "c.jpg", "d.bmp"):
        stem = name.split(".")[0]
        ref = reference_depth(tiny_model, src / name)
        png = read_depth_png(tmp_path / "out" / f"{stem}.png")
        assert png.dtype == np.uint16 and png.shape == ref.shape and (png.min(), png.max()) == (0, 65535)
        rec = meta.images[stem]
        assert rec["min"] == pytest.approx(ref.min(), rel=1e-4) and rec["max"] == pytest.approx(ref.max(), rel=1e-4)
        span = float(ref.max() - ref.min())
        np.testing.assert_allclose(meta.to_float(stem, png), ref, atol=span * 1e-4)
    assert read_depth_png(tmp_path / "out" / "c.png").shape == (20, 44)


def test_metric_model_is_depth_in_metres(tmp_path):
    model = save_tiny_depth_anything(tmp_path / "metric", metric=True)
    src = tmp_path / "in"
    src.mkdir()
    write_rgb(src / "a.png")
    assert generate_depth(src, tmp_path / "out", model=str(model), device="cpu", quiet=True).ok
    meta = DepthMeta.load(tmp_path / "out")
    assert (meta.kind, meta.units, meta.relative, meta.extra["max_depth"]) == ("depth", "m", False, 20)
    depth = meta.to_float("a", read_depth_png(tmp_path / "out" / "a.png"))
    np.testing.assert_allclose(depth, reference_depth(model, src / "a.png"), atol=20 / 65535 * 2)
    assert 0 <= depth.min() and depth.max() <= 20


def test_corrupt_image_is_skipped_and_reported(tmp_path, tiny_model):
    src = tmp_path / "in"
    src.mkdir()
    write_rgb(src / "a.png", seed=1)
    (src / "b.jpg").write_bytes(b"\xff\xd8\xff garbage")
    write_rgb(src / "c.png", seed=2)
    summary = generate_depth(src, tmp_path / "out", model=str(tiny_model), device="cpu", batch_size=4, quiet=True)
    assert not summary.ok and summary.done == 2 and list(summary.failed) == ["b.jpg"]
    assert "b.jpg: cannot read image" in summary.failed["b.jpg"]
    assert sorted(DepthMeta.load(tmp_path / "out").images) == ["a", "c"]
    assert not (tmp_path / "out" / "b.png").exists()


def test_not_a_model_folder(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    write_rgb(src / "a.png")
    (tmp_path / "empty_model").mkdir()
    with pytest.raises(BackendError, match="not a loadable depth-estimation model folder"):
        generate_depth(src, tmp_path / "out", model=str(tmp_path / "empty_model"), device="cpu", quiet=True)
    assert not (tmp_path / "out").exists()


def test_missing_weights_offline_one_line(tmp_path, repo_env, python):
    src = tmp_path / "in"
    src.mkdir()
    write_rgb(src / "a.png")
    repo_env["HF_HOME"] = str(tmp_path / "hf_home")   # empty cache
    r = subprocess.run([python, "-m", "preprocess.generate_depth", str(src), str(tmp_path / "out"), "--device", "cpu"],
                       env=repo_env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "depth-anything/Depth-Anything-V2-Small-hf" in lines[0]
    assert "python -m preprocess.download_weights --model da2-small" in lines[0]
    assert not (tmp_path / "out").exists()


def test_output_without_a_finite_value_is_refused_not_written(tmp_path, tiny_model):
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    broken = tmp_path / "nan_model"  # the tiny model with a NaN in its head: NaN depth everywhere
    model = AutoModelForDepthEstimation.from_pretrained(tiny_model)
    with torch.no_grad():
        next(model.head.parameters()).fill_(float("nan"))
    model.save_pretrained(broken)
    AutoImageProcessor.from_pretrained(tiny_model).save_pretrained(broken)
    src = tmp_path / "in"
    src.mkdir()
    write_rgb(src / "a.png", h=24, w=32, seed=1)
    summary = generate_depth(src, tmp_path / "out", model=str(broken), device="cpu", quiet=True)
    assert not summary.ok and summary.done == 0
    assert summary.failed == {"a.png": f"{src / 'a.png'}: the model's output is NaN or inf everywhere; check the "
                                       "model and its weights"}
    assert not (tmp_path / "out" / "a.png").exists()
    assert not (tmp_path / "out" / "depth_meta.json").exists() or not DepthMeta.load(tmp_path / "out").images


def test_layer_scales_fold_into_the_same_function_or_refuse(tiny_model):
    from transformers import AutoModelForDepthEstimation

    from preprocess.backends.hf_transformers import fold_layer_scales

    model = AutoModelForDepthEstimation.from_pretrained(tiny_model).eval()
    x = torch.rand(1, 3, 42, 42, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(pixel_values=x).predicted_depth
        assert fold_layer_scales(model) == 4                       # 2 blocks x (attention, MLP) in this transformers
        after = model(pixel_values=x).predicted_depth
    # same process and threads; only the order of two float32 products changes (lambda * (W h) vs (lambda W) h)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6 * before.abs().max().item())
    # a block laid out as in transformers < 5.18 (attention output not at attention.o_proj): refused, not skipped
    other = AutoModelForDepthEstimation.from_pretrained(tiny_model)
    attention = other.backbone.encoder.layer[1].attention
    attention.output = torch.nn.Module()
    attention.output.dense = attention.o_proj
    del attention.o_proj
    with pytest.raises(BackendError, match=r"cannot fold Dinov2Layer.layer_scale1: no biased linear layer "
                                           r"attention.o_proj before it in transformers .*transformers>=5.18"):
        fold_layer_scales(other)
