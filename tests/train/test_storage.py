"""Compact storage (issue 20): images as uint8 (decoded again beyond the cache's budget), priors as their 16-bit
levels, masks as bool; what training reads is the float image within half a level and the prior exactly."""

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from preprocess.depth_png import DepthMeta, read_depth_png
from s3dgs.data.colmap import read_model
from s3dgs.data.image_cache import GIB, StoredImage
from s3dgs.data.scene import _read_rgb, attach_prior, load_scene
from s3dgs.data.storage import Levels
from s3dgs.trainer import Trainer

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_a_training_step_reads_the_uint8_image_as_the_float_image(small_copy, tmp_path):
    """At the files' size the step's target is exactly the 8-bit file / 255; downscaled (resampled in float32 as
    before, then stored as uint8) it is within half a level of the float image."""
    with initialize_config_dir(str(REPO_ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"data_dir={small_copy}", "lambda_depth=0", "init.num_random=100"])
    t = Trainer(cfg, tmp_path)
    for v in t.scene.views:
        assert isinstance(v._image, StoredImage) and v._image.pixels().dtype == torch.uint8
        gt, bg = t.target(v, torch.Generator())
        rgb8 = np.asarray(Image.open(small_copy / "images" / v.name).convert("RGB"))
        np.testing.assert_array_equal(gt[0].numpy(), rgb8 / np.float32(255))
    for v in load_scene(small_copy, downscale=2).views:
        rgb = _read_rgb(small_copy / "images" / v.name, np.zeros(3, np.float32))[0]
        before = cv2.resize(rgb, (v.width, v.height), interpolation=cv2.INTER_AREA)  # the float32 it was
        assert np.abs(v.image.numpy() - before).max() <= 0.5 / 255 + 1e-6


def test_images_beyond_the_budget_are_decoded_again_the_same(small_copy):
    one = 80 * 60 * 3  # bytes of one example image as uint8 (a quarter of float32)
    everything = load_scene(small_copy)
    views = everything.views
    assert views[0]._image.cache.nbytes == len(views) * one
    small = load_scene(small_copy, image_cache_gb=5.5 * one / GIB)
    cache = small.views[0]._image.cache
    assert cache.nbytes == 5 * one  # the budget holds five: the last five loaded
    for a, b in zip(views, small.views):
        assert torch.equal(a.image, b.image)  # the others decoded again, to the same pixels
        assert cache.nbytes <= 5.5 * one
    with pytest.raises(ValueError, match="image_cache_gb=-1"):
        load_scene(small_copy, image_cache_gb=-1)


def test_priors_are_kept_as_their_png_levels_and_read_back_exactly(example_dir):
    """A prior at the views' resolution is stored as its PNG's own 16-bit levels and reads as the float it was
    (bit for bit); resampled (here to half size), it is within half a level of the float32 it was resampled to."""
    meta = DepthMeta.load(example_dir / "depth")
    for v in load_scene(example_dir, depth_dir=example_dir / "depth").views:
        png = read_depth_png(example_dir / "depth" / f"{v.key}.png")
        assert isinstance(v._prior, Levels) and np.array_equal(v._prior.levels, png)
        assert np.array_equal(v.prior.numpy(), meta.to_float(v.key, png))
    half = load_scene(example_dir, downscale=2, num_train_views=3, test_every=0).train
    for v in half:
        png = read_depth_png(example_dir / "depth" / f"{v.key}.png")
        rec = meta.images[v.key]
        as_float = meta.to_float(v.key, png)
        assert attach_prior(v, as_float, "inverse_depth") is None  # no grid: kept as float32, as before
        before = v.prior.numpy()
        assert attach_prior(v, as_float, "inverse_depth", grid=(rec["min"], rec["max"])) is None
        step = (rec["max"] - rec["min"]) / 65535
        assert isinstance(v._prior, Levels) and np.abs(v.prior.numpy() - before).max() <= step / 2 + 1e-7


def test_the_benchmark_scene_keeps_a_quarter_of_float32(tmp_path):
    """benchmarks/scene_memory.py's scene at small scale (40 views at 320x240): its images take 3 bytes a pixel
    (float32 took 12), at most the budget of them stay decoded, and its points keep their tracks."""
    spec = importlib.util.spec_from_file_location("scene_memory", REPO_ROOT / "benchmarks" / "scene_memory.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.write_scene(tmp_path, 40, (320, 240), 200)
    scene = load_scene(tmp_path)
    assert len(scene.views) == 40 and len(scene.points) == 200
    assert scene.views[0]._image.cache.nbytes == 40 * 320 * 240 * 3  # float32: 4x as much
    assert sum(len(v.point_ids) for v in scene.views) == sum(len(t) for t in read_model(tmp_path / "sparse" / "0")
                                                             .points.tracks)
    budget = 10 * 320 * 240 * 3
    assert load_scene(tmp_path, image_cache_gb=budget / GIB).views[0]._image.cache.nbytes <= budget


def test_images_are_kept_on_the_training_device(example_dir):
    """The cache lives on the device it is given (CUDA when training there; the meta device stands in for it on a
    CPU-only machine): what a step reads is already there, converted to float32 there."""
    scene = load_scene(example_dir, device="meta")
    v = scene.train[0]
    assert v._image.pixels().device.type == "meta" and v._image.pixels().dtype == torch.uint8
    image, alpha = v.rgba_on("meta")
    assert image.device.type == "meta" and image.dtype == torch.float32 and image.shape == (60, 80, 3)
    assert alpha is None and (v.width, v.height) == (80, 60)
