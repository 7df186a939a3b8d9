"""A few-view copy of a dataset whose sparse points come from its training views only.

Few-view benchmarks (e.g. LLFF fern with 3 training views) must not start from points triangulated with the
held-out views. This picks the views ``python -m s3dgs.train data.num_train_views=N`` trains on, finds SIFT
features in them, matches every pair and triangulates with the dataset's own poses and intrinsics (no pose
estimation; pycolmap), and writes OUT as a COLMAP dataset: ``images/`` (links to every image, test views
included), ``sparse/0`` (every view's pose, the new points with their tracks in the training views) and links
to SRC's ``depth/``, ``gt_depth/`` and masks when present::

    python benchmarks/few_view_dataset.py SRC OUT --views 3 [--test-every 8] [--min-points 100]
    python -m s3dgs.train data_dir=OUT data.num_train_views=3 ...

SRC is any layout the trainer reads whose split is not fixed by the layout (COLMAP, nerfstudio);
``--test-every`` must match the training run's ``data.test_every``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycolmap

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s3dgs.data import colmap  # noqa: E402
from s3dgs.data.frames import DataError, Frame, read_layout  # noqa: E402
from s3dgs.data.scene import load_scene, split_views  # noqa: E402


class FewViewError(RuntimeError):
    """A dataset this tool cannot make; the message says why."""


@dataclass(frozen=True)
class Camera:
    """One COLMAP camera: model name, image size and params (COLMAP's order, pixels, centres at +0.5); views
    with equal cameras share one in OUT."""

    model: str
    width: int
    height: int
    params: tuple[float, ...]

    def to_pycolmap(self, camera_id: int) -> pycolmap.Camera:
        return pycolmap.Camera(camera_id=camera_id, model=self.model, width=self.width, height=self.height,
                               params=list(self.params))


def colmap_camera(frame: Frame, source: dict[str, colmap.Camera]) -> Camera:
    """The camera of ``frame``: its source camera in a COLMAP dataset (``source``: image name -> camera), else
    PINHOLE / OPENCV / FULL_OPENCV / OPENCV_FISHEYE from its intrinsics and distortion (a nerfstudio OPENCV
    camera stays OPENCV, a COLMAP SIMPLE_RADIAL one SIMPLE_RADIAL)."""
    if frame.name in source:
        cam = source[frame.name]
        return Camera(cam.model, cam.width, cam.height, tuple(map(float, cam.params)))
    K, d = frame.K, frame.distortion
    pinhole = [K[0, 0], K[1, 1], K[0, 2], K[1, 2]]  # the trainer's K has pixel centres at +0.5, as COLMAP
    coeffs = [] if d is None else list(d.coeffs)
    if d is None:
        model, params = "PINHOLE", pinhole
    elif d.model == "fisheye":
        model, params = "OPENCV_FISHEYE", pinhole + (coeffs + [0.0] * 4)[:4]
    elif any(coeffs[4:]):
        model, params = "FULL_OPENCV", pinhole + (coeffs + [0.0] * 8)[:8]
    else:
        model, params = "OPENCV", pinhole + (coeffs + [0.0] * 4)[:4]
    return Camera(model, frame.width, frame.height, tuple(map(float, params)))


def image_root(data_dir: Path, frames: list[Frame]) -> Path:
    """The folder image names are relative to in OUT: ``data_dir/images`` when it holds every image, else
    ``data_dir``."""
    root = data_dir / "images"
    return root if all(f.path.is_relative_to(root) for f in frames) else data_dir


def add_view(rec: pycolmap.Reconstruction, frame: Frame, name: str, camera: Camera, camera_ids: dict[Camera, int],
             image_id: int) -> None:
    """Add ``frame`` to ``rec`` as an image registered at its known pose (world-to-camera; OpenCV and COLMAP
    camera axes agree), on ``camera``: added to ``rec`` and ``camera_ids`` with the next free id if new."""
    if camera not in camera_ids:
        camera_ids[camera] = max(camera_ids.values(), default=0) + 1
        rec.add_camera_with_trivial_rig(camera.to_pycolmap(camera_ids[camera]))
    rec.add_image_with_trivial_frame(pycolmap.Image(name=name, camera_id=camera_ids[camera], image_id=image_id),
                                     pycolmap.Rigid3d(np.linalg.inv(frame.camtoworld)[:3, :4]))


def triangulate(frames: list[Frame], names: list[str], cameras: list[Camera], root: Path, work: Path,
                min_points: int) -> tuple[pycolmap.Reconstruction, dict[Camera, int]]:
    """SIFT features of the images ``root / names``, matched exhaustively and triangulated with the known poses
    of ``frames`` and their ``cameras`` (nothing refined; scratch files in ``work``). Returns the
    reconstruction of these views and its camera ids; fails with fewer than ``min_points`` points."""
    pycolmap.logging.minloglevel = 2  # errors only
    db_path = work / "database.db"
    mode = pycolmap.CameraMode.SINGLE if len(set(cameras)) == 1 else pycolmap.CameraMode.PER_IMAGE
    pycolmap.extract_features(db_path, root, image_names=names, camera_mode=mode,
                              reader_options=pycolmap.ImageReaderOptions(camera_model=cameras[0].model),
                              extraction_options=pycolmap.FeatureExtractionOptions(num_threads=1, use_gpu=False),
                              device=pycolmap.Device.cpu)
    rec, camera_ids = pycolmap.Reconstruction(), {}
    db = pycolmap.Database.open(db_path)
    try:  # the database's camera and image ids, with the known intrinsics
        by_name = {im.name: im for im in db.read_all_images()}
        for frame, name, camera in zip(frames, names, cameras):
            im = by_name[name]
            if camera not in camera_ids:
                camera_ids[camera] = im.camera_id
                db.update_camera(camera.to_pycolmap(im.camera_id))
                rec.add_camera_with_trivial_rig(camera.to_pycolmap(im.camera_id))
            add_view(rec, frame, name, camera, camera_ids, im.image_id)
    finally:
        db.close()
    pycolmap.match_exhaustive(db_path, pycolmap.FeatureMatchingOptions(num_threads=1, use_gpu=False),
                              device=pycolmap.Device.cpu)
    options = pycolmap.IncrementalPipelineOptions(num_threads=1)
    options.triangulation.ignore_two_view_tracks = False  # with 3 views most points are seen twice
    rec = pycolmap.triangulate_points(rec, db_path, root, work, options=options)
    if rec.num_points3D() < min_points:
        db = pycolmap.Database.open(db_path)
        features = db.num_keypoints() / len(names)
        inliers = [len(g.inlier_matches) for g in db.read_two_view_geometries()[1] if len(g.inlier_matches)]
        db.close()
        raise FewViewError(f"triangulation gave {rec.num_points3D()} points (< {min_points}) from {len(names)} "
                           f"views: {features:.0f} SIFT features per view, {len(inliers)} of "
                           f"{len(names) * (len(names) - 1) // 2} view pairs share verified matches "
                           f"({sum(inliers)} in all); the training views see too little in common (use more "
                           "--views, or larger, more textured images)")
    return rec, camera_ids


def link(target: Path, at: Path) -> None:
    """Symlink ``at`` -> ``target`` (absolute), creating ``at``'s folder."""
    at.parent.mkdir(parents=True, exist_ok=True)
    at.symlink_to(target.resolve())


def make_dataset(src: Path, out: Path, views: int, test_every: int = 8, min_points: int = 100) -> str:
    """Write the few-view dataset (see the module docstring) and return its summary line."""
    if not src.is_dir():
        raise FewViewError(f"SRC {src} does not exist or is not a folder")
    if views < 2:
        raise FewViewError(f"--views {views}: triangulation needs at least 2 training views")
    if out.exists() and any(out.iterdir()):
        raise FewViewError(f"OUT {out} exists and is not empty; remove it or pass a new folder")
    layout = read_layout(src)
    frames = layout.frames
    if any(f.split is not None for f in frames):
        raise FewViewError(f"{src}: the layout fixes its own train/test split ({layout.kind}); a COLMAP copy "
                           "would split every --test-every-th image instead")
    indices, splits = list(range(len(frames))), [None] * len(frames)
    available = len(split_views(indices, splits, test_every, None)[0])
    if views > available:
        raise FewViewError(f"--views {views}: {src} has only {available} training views with --test-every "
                           f"{test_every}")
    train = split_views(indices, splits, test_every, views)[0]  # the trainer's choice
    root = image_root(src, frames)
    names = [f.path.relative_to(root).as_posix() for f in frames]
    source = {}
    if layout.kind == "colmap":
        model = colmap.read_model(colmap.find_model_dir(src))
        source = {im.name: model.cameras[im.camera_id] for im in model.images.values()}
    cameras = [colmap_camera(f, source) for f in frames]
    with tempfile.TemporaryDirectory(prefix="few_view_") as work:
        rec, camera_ids = triangulate([frames[i] for i in train], [names[i] for i in train],
                                      [cameras[i] for i in train], root, Path(work), min_points)
    num_points, track_length = rec.num_points3D(), rec.compute_mean_track_length()
    error = rec.compute_mean_reprojection_error()
    next_id = max(rec.reg_image_ids()) + 1
    for i, f in enumerate(frames):
        if i not in train:  # a test view (or a training view left out): posed, no observations
            add_view(rec, f, names[i], cameras[i], camera_ids, next_id)
            next_id += 1
        link(f.path, out / "images" / names[i])
        if f.mask_path is not None:
            link(f.mask_path, out / "masks" / f"{names[i]}.png")
    for sub in ("depth", "gt_depth"):  # the trainer's default prior folder, the ground truth
        if (src / sub).is_dir():
            link(src / sub, out / sub)
    (out / "sparse" / "0").mkdir(parents=True)
    rec.write(out / "sparse" / "0")
    blind = check(out, [names[i] for i in train], test_every, num_points)
    return (f"{out}: {len(train)} training views, {num_points} points, mean track length {track_length:.2f}, "
            f"mean reprojection error {error:.2f} px"
            + (f"; none seen by {', '.join(blind)} (no matches with the other training views)" if blind else ""))


def check(out: Path, train_names: list[str], test_every: int, num_points: int) -> list[str]:
    """Load ``out`` as the trainer does, assert it trains on ``train_names`` from ``num_points`` points that no
    test view sees, and return the training views that see none of them."""
    scene = load_scene(out, test_every=test_every, num_train_views=len(train_names), downscale=8)  # names only
    assert [v.name for v in scene.train] == train_names, ([v.name for v in scene.train], train_names)
    assert len(scene.points) == num_points, (len(scene.points), num_points)
    assert all(len(v.point_ids) == 0 for v in scene.test)
    return [v.name for v in scene.train if len(v.point_ids) == 0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path, help="dataset to copy (COLMAP or nerfstudio layout)")
    ap.add_argument("out", type=Path, help="new folder for the COLMAP dataset")
    ap.add_argument("--views", type=int, required=True, help="training views (as data.num_train_views)")
    ap.add_argument("--test-every", type=int, default=8, help="as data.test_every (default 8)")
    ap.add_argument("--min-points", type=int, default=100, help="fail with fewer points (default 100)")
    args = ap.parse_args(argv)
    try:
        print(make_dataset(args.src, args.out, args.views, args.test_every, args.min_points))
    except (FewViewError, DataError, colmap.ColmapError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
