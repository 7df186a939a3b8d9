"""Dataset loading: layouts, splits, priors matched by key, and clear errors/warnings on bad input."""

import json
import logging
import shutil

import cv2
import numpy as np
import plyfile
import pycolmap
import pytest
import torch
from PIL import Image
from scipy import ndimage

from preprocess.depth_png import DepthMeta, quantize, write_depth_png
from s3dgs.data.frames import DataError, Distortion, read_layout
from s3dgs.data.scene import View, _undistort, attach_prior, load_scene, resolve_background


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
    by_key = {v.key: v for v in s.views}
    assert by_key["view_03"].prior is None and by_key["view_05"].prior is None
    assert by_key["view_04"].prior is not None


def test_prior_without_meta_is_relative_inverse_depth_and_resized(small_copy):
    (small_copy / "depth" / "depth_meta.json").unlink()
    png = np.tile(np.linspace(0, 65535, 160).astype(np.uint16), (120, 1))  # 2x the image size
    write_depth_png(small_copy / "depth" / "view_01.png", png)
    s = load_scene(small_copy, depth_dir=small_copy / "depth")
    v = next(v for v in s.views if v.key == "view_01")
    assert s.prior_kind == "inverse_depth" and v.prior.shape == (60, 80)
    assert 0 <= float(v.prior.min()) < 0.02 and 0.98 < float(v.prior.max()) <= 1.0


def test_metric_prior_kind_from_meta(small_copy):
    meta = DepthMeta.load(small_copy / "depth")
    meta.kind, meta.relative, meta.units = "depth", False, "m"
    meta.save(small_copy / "depth")
    s = load_scene(small_copy, depth_dir=small_copy / "depth")
    assert s.prior_kind == "depth"


@pytest.mark.parametrize("prior_size,distorted", [((80, 60), False), ((20, 15), False), ((40, 30), True),
                                                   ((80, 60), True)])
def test_prior_holes_never_blend_into_valid_pixels(prior_size, distorted):
    """A metric prior with holes (0 and NaN) next to valid pixels: at training resolution every valid pixel has
    exactly the value it has when the prior has no holes, and only pixels near a hole are invalid."""
    w, h = prior_size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    full = 2.0 + xx / w + 3.0 * yy / h  # metres
    holed = full.copy()
    holed[h // 3 + 1: h // 2 + 1, w // 4 + 1: w // 2 + 1] = 0.0  # odd edges: straddle the resampling footprints
    holed[2 * h // 3, 3 * w // 4] = np.nan
    K = np.array([[40.0, 0, 20], [0, 40.0, 15], [0, 0, 1]])
    remap = _undistort(K, Distortion("opencv", (0.1, -0.05, 0.01, -0.005)), (40, 30))[1] if distorted else None
    a, b = (View("v.png", "v", torch.zeros(30, 40, 3), torch.eye(3), torch.eye(4), remap=remap) for _ in range(2))
    assert attach_prior(a, holed, "depth", step=0.01) is None and attach_prior(b, full, "depth") is None
    assert a.prior_step == 0.01 and bool(b.prior_valid.all())
    valid = a.prior_valid.numpy()
    assert 0.8 < valid.mean() < 0.98  # the holes, grown only by the resampling footprint
    np.testing.assert_allclose(a.prior.numpy()[valid], b.prior.numpy()[valid], rtol=1e-6)
    assert (a.prior.numpy()[~valid] == 0).all()
    ring = ~valid & ndimage.binary_dilation(valid)  # invalid pixels next to valid ones: the holes' edge
    assert ring.any()


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


def _as_text_model(scene, edit) -> None:
    """``edit(reconstruction)`` the example's model with pycolmap and write it back as text (.bin removed)."""
    rec = pycolmap.Reconstruction(scene / "sparse" / "0")
    edit(rec)
    for f in (scene / "sparse" / "0").glob("*.bin"):
        f.unlink()
    rec.write_text(scene / "sparse" / "0")


def _set_camera(scene, model: str, extra: list[float]) -> None:
    """Give the example's PINHOLE camera the COLMAP ``model`` with ``extra`` params after fx, fy, cx, cy."""
    def edit(rec):
        cam = rec.camera(1)
        params = [*cam.params, *extra]
        cam.model, cam.params = model, params
    _as_text_model(scene, edit)


@pytest.mark.parametrize("model, extra, expected", [
    ("OPENCV", [0.3, 0.1, 0, 0], Distortion("opencv", (0.3, 0.1, 0, 0))),
    ("OPENCV_FISHEYE", [0.5, 0.1, 0, 0], Distortion("fisheye", (0.5, 0.1, 0, 0)))])
def test_distorted_colmap_camera_is_undistorted_to_a_full_frame(small_copy, model, extra, expected):
    _set_camera(small_copy, model, extra)
    assert read_layout(small_copy).frames[0].distortion == expected
    v = load_scene(small_copy).train[0]
    f = read_layout(small_copy).frames[0].K[0, 0]
    assert float(v.K[0, 0]) > 1.02 * f  # zoomed in (as colmap image_undistorter) ...
    assert v.mask is not None and float(v.mask.float().mean()) > 0.98  # ... so (almost) no pixel falls outside


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_ignored_as_colmap_does(small_copy, orientation):
    """COLMAP posed the stored pixels (it ignores EXIF): a JPEG tagged to display rotated trains in stored order,
    with its prior (priors are made in stored order too)."""
    png = small_copy / "images" / "view_01.png"
    stored = np.asarray(Image.open(png).convert("RGB"))
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(small_copy / "images" / "view_01.jpg", quality=95, exif=exif)
    png.unlink()
    def rename(rec):
        rec.find_image_with_name("view_01.png").name = "view_01.jpg"
    _as_text_model(small_copy, rename)
    v = next(v for v in load_scene(small_copy, depth_dir=small_copy / "depth").views if v.name == "view_01.jpg")
    assert v.image.shape == (60, 80, 3) and v.prior is not None and v.prior.shape == (60, 80)
    # JPEG loss only (measured 0.009); the image turned by its tag differs by 0.16 (measured)
    assert np.abs(v.image.numpy() - stored / 255.0).mean() < 0.02


def _write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_blender_layout_keeps_alpha_on_a_white_background_and_its_split(tmp_path):
    rgba = np.zeros((8, 10, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:4, :, 3] = 255  # top half opaque red, bottom transparent
    rgba[4, :, 3] = 51  # one row 20 % opaque
    c2w = np.eye(4).tolist()
    for split, n in (("train", 3), ("test", 2)):
        frames = []
        for i in range(n):
            _write_png(tmp_path / split / f"r_{i}.png", rgba)
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": c2w})
        (tmp_path / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": 0.69, "frames": frames}))
    s = load_scene(tmp_path)
    assert (len(s.train), len(s.test)) == (3, 2) and s.kind == "blender" and s.background == (1.0, 1.0, 1.0)
    v = s.train[0]
    assert v.mask is None  # every pixel is supervised
    np.testing.assert_array_equal(v.alpha.numpy(), rgba[..., 3] / np.float32(255))
    np.testing.assert_allclose(v.image[6, 5].numpy(), [1, 1, 1])  # transparent -> background
    np.testing.assert_allclose(v.image[1, 5].numpy(), [200 / 255, 0, 0], atol=1e-6)
    np.testing.assert_allclose(v.image[4, 5].numpy(), [0.2 * 200 / 255 + 0.8, 0.8, 0.8], atol=1e-6)
    # OpenGL camera (looking down -z) -> OpenCV axes: camera z = world -z
    np.testing.assert_allclose(v.camtoworld[:3, 2].numpy(), [0, 0, -1])
    assert float(v.K[0, 0]) == pytest.approx(0.5 * 10 / np.tan(0.345), rel=1e-6)
    black = load_scene(tmp_path, background=[0, 0, 0]).train[0]
    np.testing.assert_allclose(black.image[6, 5].numpy(), [0, 0, 0])
    premultiplied = rgba[..., :3] / 255 * (rgba[..., 3:] / 255)  # = image - bg * (1 - alpha), on any background
    for view, bg in ((v, s.background), (black, (0, 0, 0))):
        got = view.image.numpy() - np.asarray(bg) * (1 - view.alpha.numpy()[..., None])
        np.testing.assert_allclose(got, premultiplied, atol=1e-6)
    assert load_scene(tmp_path, background="random").background == (1.0, 1.0, 1.0)


def test_background_setting():
    assert resolve_background(None, "colmap") == (0.0, 0.0, 0.0)
    assert resolve_background("random", "nerfstudio") == (0.0, 0.0, 0.0)
    assert resolve_background([0.5, 1, 0], "blender") == (0.5, 1.0, 0.0)
    for bad in ("white", [1, 1], [0, 0, 2]):
        with pytest.raises(DataError, match="data.background=.*: use null"):
            resolve_background(bad, "colmap")


def _write_nerfstudio(root, images: list, frame_fields: dict | None = None, **shared) -> None:
    """``root/transforms.json``: one identity-pose frame per image ``images/f<i>.png`` (None = file missing),
    per-frame fields ``frame_fields[i]`` and the shared ``shared``."""
    frames = []
    for i, img in enumerate(images):
        if img is not None:
            _write_png(root / "images" / f"f{i}.png", img)
        frames.append({"file_path": f"images/f{i}.png", "transform_matrix": np.eye(4).tolist(),
                       **(frame_fields or {}).get(i, {})})
    (root / "transforms.json").write_text(json.dumps({**shared, "frames": frames}))


def test_nerfstudio_layout_per_frame_intrinsics_and_missing_frames(tmp_path, caplog):
    img = np.full((12, 16, 3), 255, np.uint8)
    _write_nerfstudio(tmp_path, [img, img, None, img], {1: {"fl_x": 20.0, "fl_y": 21.0}},
                      fl_x=10.0, fl_y=11.0, cx=8, cy=6, w=16, h=12)
    with caplog.at_level(logging.WARNING):
        s = load_scene(tmp_path, test_every=0)
    assert "1 of 4 posed images are missing" in caplog.text
    fx = {v.key: float(v.K[0, 0]) for v in s.train}
    assert fx == {"f0": 10.0, "f1": 20.0, "f3": 10.0}
    assert s.background == (0.0, 0.0, 0.0) and len(s.points) == 0 and s.train[0].alpha is None


def _write_ply(path, xyz, rgb=None) -> None:
    fields = [(c, "f4") for c in "xyz"] + ([] if rgb is None else [(c, "u1") for c in ("red", "green", "blue")])
    v = np.empty(len(xyz), fields)
    v["x"], v["y"], v["z"] = xyz.T
    if rgb is not None:
        v["red"], v["green"], v["blue"] = rgb.T
    plyfile.PlyData([plyfile.PlyElement.describe(v, "vertex")]).write(str(path))


def test_nerfstudio_ply_file_path_gives_the_points_and_colours(tmp_path):
    rng = np.random.default_rng(0)
    xyz, rgb = rng.normal(size=(7, 3)).astype(np.float32), rng.integers(0, 256, (7, 3), dtype=np.uint8)
    _write_ply(tmp_path / "pc.ply", xyz, rgb)
    _write_ply(tmp_path / "grey.ply", xyz)
    (tmp_path / "bad.ply").write_text("not a ply")
    img = np.zeros((12, 16, 3), np.uint8)
    _write_nerfstudio(tmp_path, [img, img], fl_x=10.0, w=16, h=12, ply_file_path="pc.ply")
    s = load_scene(tmp_path)
    np.testing.assert_array_equal(s.points.numpy(), xyz)  # same frame as transform_matrix: no conversion
    np.testing.assert_array_equal((s.points_rgb.numpy() * 255).round(), rgb)
    _write_nerfstudio(tmp_path, [img, img], fl_x=10.0, w=16, h=12, ply_file_path="grey.ply")
    np.testing.assert_allclose(load_scene(tmp_path).points_rgb.numpy(), 128 / 255)
    for name, why in (("gone.ply", "does not exist"), ("bad.ply", "not a readable PLY")):
        _write_nerfstudio(tmp_path, [img, img], fl_x=10.0, w=16, h=12, ply_file_path=name)
        with pytest.raises(DataError, match=f"{name}: .*{why}.*fix ply_file_path in transforms.json") as e:
            load_scene(tmp_path)
        assert "\n" not in str(e.value)


def test_nerfstudio_mask_path_is_the_view_mask(tmp_path):
    img = np.zeros((12, 16, 3), np.uint8)
    keep = np.random.default_rng(0).random((12, 16)) > 0.3
    _write_png(tmp_path / "masks" / "m0.png", (keep * 255).astype(np.uint8))  # 8-bit greyscale
    Image.fromarray(keep).save(tmp_path / "masks" / "m1.png")  # 1-bit
    _write_nerfstudio(tmp_path, [img, img, img], {0: {"mask_path": "masks/m0.png"}, 1: {"mask_path": "masks/m1.png"}},
                      fl_x=10.0, w=16, h=12)
    s = load_scene(tmp_path, downscale=2, test_every=0)
    for v in s.train[:2]:
        np.testing.assert_array_equal(v.mask.numpy(), keep[::2, ::2])  # nearest
    assert s.train[2].mask is None
    _write_nerfstudio(tmp_path, [img], {0: {"mask_path": "masks/gone.png"}}, fl_x=10.0, w=16, h=12)
    with pytest.raises(DataError, match="gone.png: mask_path of images/f0.png in transforms.json does not exist"):
        load_scene(tmp_path)


def _distort(x: np.ndarray, y: np.ndarray, d: Distortion) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's documented distortion of normalised coordinates (pinhole+radial-tangential, or fisheye)."""
    r2 = x * x + y * y
    if d.model == "fisheye":
        r = np.sqrt(r2)
        theta = np.arctan(r)
        t2 = theta * theta
        k1, k2, k3, k4 = d.coeffs
        scale = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4)))) / np.maximum(r, 1e-12)
        return x * scale, y * scale
    k1, k2, p1, p2, k3 = d.coeffs
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)


def test_nerfstudio_opencv_k3_and_fisheye_are_undistorted(tmp_path):
    """The source image is a ramp (red = 4 x column, green = 4 x row), so bilinear undistortion is exact and each
    undistorted pixel says where in the distorted image it was sampled: there, OpenCV's model must put it."""
    W, H, f, cx, cy = 64, 48, 50.0, 32.0, 24.0
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    ramp = np.stack([4 * u, 4 * v, np.zeros_like(u)], -1).astype(np.uint8)
    opencv = Distortion("opencv", (0.1, -0.05, 0.01, -0.005, 0.02))
    fisheye = Distortion("fisheye", (0.4, 0.05, -0.01, 0.005))
    _write_nerfstudio(tmp_path, [ramp, ramp], {1: {"camera_model": "OPENCV_FISHEYE", "k1": 0.4, "k2": 0.05,
                                                   "k3": -0.01, "k4": 0.005}},
                      camera_model="OPENCV", fl_x=f, fl_y=f, cx=cx, cy=cy, w=W, h=H,
                      **dict(zip(("k1", "k2", "p1", "p2", "k3"), opencv.coeffs)))
    assert [fr.distortion for fr in read_layout(tmp_path).frames] == [opencv, fisheye]
    s = load_scene(tmp_path, test_every=0)
    for view, dist in zip(s.train, (opencv, fisheye)):
        # pixel centres at +0.5 in K; the ramp's value at column c is sampled at the centre of pixel c. The
        # undistorted image has its own pinhole intrinsics view.K (zoomed so that it has no empty border).
        K = view.K.double().numpy()
        xd, yd = _distort((u + 0.5 - K[0, 2]) / K[0, 0], (v + 0.5 - K[1, 2]) / K[1, 1], dist)
        src_u, src_v = f * xd + cx - 0.5, f * yd + cy - 0.5
        inside = (src_u >= -0.5) & (src_u <= W - 0.5) & (src_v >= -0.5) & (src_v <= H - 0.5)  # on the image
        mask = view.mask.numpy()
        assert mask.mean() > 0.97 and np.array_equal(mask, inside)
        exact = (src_u >= 0) & (src_u <= W - 1) & (src_v >= 0) & (src_v <= H - 1)  # bilinear is exact between centres
        got = view.image.numpy() * 255 / 4
        tol = 0.03 + 0.5 / 4  # and the image is kept as uint8: half a level of the ramp's 4 per pixel
        np.testing.assert_allclose(got[..., 0][exact], src_u[exact], atol=tol)
        np.testing.assert_allclose(got[..., 1][exact], src_v[exact], atol=tol)


def test_unsupported_nerfstudio_camera_model_is_a_clear_error(tmp_path):
    _write_nerfstudio(tmp_path, [np.zeros((12, 16, 3), np.uint8)], camera_model="EQUIRECTANGULAR", fl_x=10.0)
    with pytest.raises(DataError) as e:
        load_scene(tmp_path)
    assert str(e.value) == (f"{tmp_path / 'transforms.json'}: camera_model EQUIRECTANGULAR is not supported; undistort "
                            "the images first (e.g. ns-process-data / colmap image_undistorter)")


def test_colmap_masks_folder_applies(small_copy, caplog):
    keep = np.random.default_rng(0).random((60, 80)) > 0.5
    _write_png(small_copy / "masks" / "view_01.png.png", (keep * 255).astype(np.uint8))  # <image name>.png
    _write_png(small_copy / "masks" / "view_02.png", (~keep * 255).astype(np.uint8))  # <stem>.png
    with caplog.at_level(logging.WARNING):
        s = load_scene(small_copy)
    assert "22 of 24 images have no mask" in caplog.text
    by_key = {v.key: v for v in s.views}
    np.testing.assert_array_equal(by_key["view_01"].mask.numpy(), keep)
    np.testing.assert_array_equal(by_key["view_02"].mask.numpy(), ~keep)
    assert by_key["view_03"].mask is None


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
