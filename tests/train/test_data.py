"""Dataset loading: layouts, splits, priors matched by stem, and clear errors/warnings on bad input."""

import json
import logging
import shutil

import cv2
import numpy as np
import pytest

from preprocess.depth_png import DepthMeta, quantize, write_depth_png
from s3dgs.data import colmap
from s3dgs.data.frames import DataError
from s3dgs.data.scene import load_scene


def test_colmap_example_loads_with_priors_and_gt(example_dir):
    s = load_scene(example_dir, depth_dir=example_dir / "depth")
    assert (len(s.train), len(s.test)) == (21, 3)
    assert [v.name for v in s.test] == ["view_00.png", "view_08.png", "view_16.png"]  # every 8th, Mip-NeRF 360 rule
    assert s.prior_kind == "inverse_depth"
    v = s.train[0]
    assert v.image.shape == (60, 80, 3) and v.gt_depth.shape == (60, 80) and v.prior.shape == (60, 80)
    assert bool(v.prior_valid.all())
    # the prior is relative inverse depth: strongly correlated with 1/gt, but not equal to it
    corr = np.corrcoef(v.prior.numpy().ravel(), 1 / v.gt_depth.numpy().ravel())[0, 1]
    assert 0.9 < corr < 0.9999
    assert len(v.point_ids) > 20 and len(s.points) > 500


def test_downscale_and_few_views(example_dir):
    s = load_scene(example_dir, downscale=2, num_train_views=4)
    assert len(s.train) == 4 and s.train[0].image.shape == (30, 40, 3)
    full = load_scene(example_dir)
    np.testing.assert_allclose(s.train[0].K[:2].numpy(), full.train[0].K[:2].numpy() / 2, rtol=1e-6)
    assert [v.name for v in s.train] == ["view_01.png", "view_09.png", "view_15.png", "view_23.png"]


def test_missing_and_wrong_size_priors_warn_once(small_copy, caplog):
    (small_copy / "depth" / "view_03.png").unlink()
    write_depth_png(small_copy / "depth" / "view_05.png", np.zeros((10, 50), np.uint16))  # wrong aspect ratio
    with caplog.at_level(logging.WARNING):
        s = load_scene(small_copy, depth_dir=small_copy / "depth")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "2 of 24 views train without the depth term" in warnings[0]
    assert "view_03: no view_03.png" in warnings[0] and "view_05: prior is 50x10" in warnings[0]
    by_stem = {v.stem: v for v in s.views}
    assert by_stem["view_03"].prior is None and by_stem["view_05"].prior is None
    assert by_stem["view_04"].prior is not None


def test_prior_without_meta_is_relative_inverse_depth_and_resized(small_copy):
    (small_copy / "depth" / "depth_meta.json").unlink()
    png = np.tile(np.linspace(0, 65535, 160).astype(np.uint16), (120, 1))  # 2x the image size
    write_depth_png(small_copy / "depth" / "view_01.png", png)
    s = load_scene(small_copy, depth_dir=small_copy / "depth")
    v = next(v for v in s.views if v.stem == "view_01")
    assert s.prior_kind == "inverse_depth" and v.prior.shape == (60, 80)
    assert 0 <= float(v.prior.min()) < 0.02 and 0.98 < float(v.prior.max()) <= 1.0


def test_metric_prior_kind_from_meta(small_copy):
    meta = DepthMeta.load(small_copy / "depth")
    meta.kind, meta.relative, meta.units = "depth", False, "m"
    meta.save(small_copy / "depth")
    s = load_scene(small_copy, depth_dir=small_copy / "depth")
    assert s.prior_kind == "depth"


def test_bad_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        load_scene(tmp_path / "nope")
    with pytest.raises(DataError, match="no COLMAP model"):
        load_scene(tmp_path)


def test_images_without_poses_warn_and_posed_images_missing_are_skipped(small_copy, caplog):
    shutil.copy(small_copy / "images" / "view_00.png", small_copy / "images" / "extra.png")
    (small_copy / "images" / "view_02.png").unlink()
    with caplog.at_level(logging.WARNING):
        s = load_scene(small_copy)
    text = caplog.text
    assert "1 images in" in text and "no pose in the COLMAP model" in text
    assert "1 of 24 posed images are missing" in text
    assert len(s.views) == 23


def test_distorted_colmap_camera_is_undistorted_with_a_mask(small_copy):
    model = colmap.read_model(small_copy / "sparse" / "0")
    cam = model.cameras[1]
    fx, fy, cx, cy = cam.params
    model.cameras[1] = colmap.Camera(1, "OPENCV", cam.width, cam.height, np.array([fx, fy, cx, cy, 0.3, 0.1, 0, 0]))
    colmap.write_model(model, small_copy / "sparse" / "0", ".txt")
    for f in (small_copy / "sparse" / "0").glob("*.bin"):
        f.unlink()
    s = load_scene(small_copy)
    v = s.train[0]
    assert v.mask is not None and 0.5 < float(v.mask.float().mean()) < 1.0  # corners fall outside
    assert bool(v.mask[30, 40])


def _write_png(path, rgba):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))


def test_blender_layout_composites_rgba_and_keeps_its_split(tmp_path):
    rgba = np.zeros((8, 10, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:4, :, 3] = 255  # top half opaque red, bottom transparent
    c2w = np.eye(4).tolist()
    for split, n in (("train", 3), ("test", 2)):
        frames = []
        for i in range(n):
            _write_png(tmp_path / split / f"r_{i}.png", rgba)
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": c2w})
        (tmp_path / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": 0.69, "frames": frames}))
    s = load_scene(tmp_path, background=(1.0, 1.0, 1.0))
    assert (len(s.train), len(s.test)) == (3, 2) and s.kind == "blender"
    v = s.train[0]
    np.testing.assert_allclose(v.image[6, 5].numpy(), [1, 1, 1])  # transparent -> background
    np.testing.assert_allclose(v.image[1, 5].numpy(), [200 / 255, 0, 0], atol=1e-6)
    assert bool(v.mask[1, 5]) and not bool(v.mask[6, 5])
    # OpenGL camera (looking down -z) -> OpenCV axes: camera z = world -z
    np.testing.assert_allclose(v.camtoworld[:3, 2].numpy(), [0, 0, -1])
    assert float(v.K[0, 0]) == pytest.approx(0.5 * 10 / np.tan(0.345), rel=1e-6)


def test_nerfstudio_layout_per_frame_intrinsics_and_missing_frames(tmp_path, caplog):
    img = np.full((12, 16, 4), 255, np.uint8)
    frames = []
    for i in range(4):
        if i != 2:
            _write_png(tmp_path / "images" / f"f{i}.png", img)
        frames.append({"file_path": f"images/f{i}.png", "transform_matrix": np.eye(4).tolist(),
                       **({"fl_x": 20.0, "fl_y": 21.0} if i == 1 else {})})
    (tmp_path / "transforms.json").write_text(json.dumps({"fl_x": 10.0, "fl_y": 11.0, "cx": 8, "cy": 6, "w": 16,
                                                          "h": 12, "frames": frames}))
    with caplog.at_level(logging.WARNING):
        s = load_scene(tmp_path, test_every=0)
    assert "1 of 4 posed images are missing" in caplog.text
    fx = {v.stem: float(v.K[0, 0]) for v in s.train}
    assert fx == {"f0": 10.0, "f1": 20.0, "f3": 10.0}


def test_gt_depth_of_wrong_size_is_an_error(small_copy):
    np.save(small_copy / "gt_depth" / "view_04.npy", np.ones((5, 5), np.float32))
    with pytest.raises(DataError, match="view_04.npy: shape"):
        load_scene(small_copy)


def test_example_is_deterministic(example_dir, tmp_path):
    from s3dgs import example
    K, poses = example.camera_poses()
    rgb, depth = example.render_view(K, poses[3])
    img = cv2.cvtColor(cv2.imread(str(example_dir / "images" / "view_03.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(img, (np.clip(rgb, 0, 1) ** (1 / 2.2) * 255).round().astype(np.uint8))
    np.testing.assert_array_equal(np.load(example_dir / "gt_depth" / "view_03.npy"), depth.astype(np.float32))
    png, _, _ = quantize(example.make_prior(depth, np.random.default_rng(0)))
    assert png.dtype == np.uint16 and png.max() == 65535
    # thin stems exist: pixels much nearer than both horizontal neighbours (1-2 px wide structures)
    d = depth
    thin = (d[:, 1:-1] < 0.9 * d[:, :-2]) & (d[:, 1:-1] < 0.9 * d[:, 2:])
    assert thin.sum() >= 5
