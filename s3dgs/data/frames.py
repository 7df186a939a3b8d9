"""Dataset layouts -> a list of :class:`Frame` (one posed image, not yet loaded).

Three layouts: COLMAP (``images/`` + ``sparse/0``), NeRF/Blender (``transforms_{train,val,test}.json``)
and nerfstudio / instant-ngp (``transforms.json``). Poses come out camera-to-world in OpenCV axes
(x right, y down, z forward); intrinsics at the image files' full resolution.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from s3dgs.data import colmap

log = logging.getLogger(__name__)

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".exr"}
# OpenCV distortion vectors (k1, k2, p1, p2) from COLMAP params, indexed past the intrinsics.
_DISTORTION = {
    "SIMPLE_PINHOLE": lambda p: None, "PINHOLE": lambda p: None,
    "SIMPLE_RADIAL": lambda p: [p[3], 0.0, 0.0, 0.0], "RADIAL": lambda p: [p[3], p[4], 0.0, 0.0],
    "OPENCV": lambda p: list(p[4:8]),
}
_OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


class DataError(ValueError):
    """A dataset that cannot be used; the message names the file and the fix."""


@dataclass
class Frame:
    name: str  # unique image name (relative path inside the image folder)
    path: Path  # image file
    K: np.ndarray  # [3, 3] intrinsics at full resolution, pixel centres at +0.5
    camtoworld: np.ndarray  # [4, 4] OpenCV axes
    width: int
    height: int
    distortion: list[float] | None = None  # OpenCV (k1, k2, p1, p2), None = pinhole
    split: str | None = None  # "train"/"test" when the layout fixes it
    point_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # sparse points seen

    @property
    def stem(self) -> str:
        return Path(self.name).stem


@dataclass
class Layout:
    frames: list[Frame]
    points: np.ndarray  # [P, 3] sparse points (world), may be empty
    points_rgb: np.ndarray  # [P, 3] uint8
    kind: str


def detect_layout(data_dir: Path) -> str:
    """Name of the layout in ``data_dir``: ``colmap``, ``blender`` or ``nerfstudio``."""
    if not data_dir.is_dir():
        raise DataError(f"data_dir {data_dir}: not a folder; pass data_dir=<folder with images/ and sparse/0/, "
                        "transforms.json or transforms_train.json>")
    if (data_dir / "transforms_train.json").exists():
        return "blender"
    if (data_dir / "transforms.json").exists():
        return "nerfstudio"
    if (data_dir / "sparse").is_dir():
        return "colmap"
    raise DataError(f"data_dir {data_dir}: no COLMAP model (sparse/0/), transforms.json or transforms_train.json; "
                    "run COLMAP (or ns-process-data) on your images first")


def read_layout(data_dir: Path, kind: str = "auto", images_dir: str = "images") -> Layout:
    """Read the poses, intrinsics and sparse points of the dataset in ``data_dir``."""
    kind = detect_layout(data_dir) if kind == "auto" else kind
    readers = {"colmap": lambda: read_colmap(data_dir, images_dir), "blender": lambda: read_blender(data_dir),
               "nerfstudio": lambda: read_nerfstudio(data_dir)}
    if kind not in readers:
        raise DataError(f"data.type={kind!r}: use auto, colmap, blender or nerfstudio")
    return readers[kind]()


def _keep_existing(frames: list[Frame], where: Path) -> list[Frame]:
    missing = [f.name for f in frames if not f.path.exists()]
    if missing:
        log.warning("%d of %d posed images are missing under %s and are skipped (e.g. %s)",
                    len(missing), len(frames), where, ", ".join(missing[:3]))
    frames = [f for f in frames if f.path.exists()]
    if not frames:
        raise DataError(f"{where}: none of the posed images exist; check data_dir and the image folder name")
    return frames


def read_colmap(data_dir: Path, images_dir: str = "images") -> Layout:
    try:
        model = colmap.read_model(colmap.find_model_dir(data_dir))
    except colmap.ColmapError as e:
        raise DataError(str(e)) from None
    img_root = data_dir / images_dir
    if not img_root.is_dir():
        raise DataError(f"{img_root}: image folder missing; COLMAP datasets keep their images in images/")
    frames = []
    for im in sorted(model.images.values(), key=lambda im: im.name):
        cam = model.cameras[im.camera_id]
        p = cam.params
        if cam.model not in _DISTORTION:
            raise DataError(f"{data_dir}: camera model {cam.model} is not supported; undistort with "
                            "`colmap image_undistorter` first")
        if cam.model == "SIMPLE_PINHOLE" or cam.model in ("SIMPLE_RADIAL", "RADIAL"):
            fx = fy = p[0]
            cx, cy = p[1], p[2]
        else:
            fx, fy, cx, cy = p[:4]
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
        frames.append(Frame(im.name, img_root / im.name, K, np.linalg.inv(im.world_to_camera()), cam.width,
                            cam.height, _DISTORTION[cam.model](p), None, im.point3d_ids[im.point3d_ids >= 0]))
    posed = {f.name for f in frames}
    unposed = [p for p in sorted(img_root.rglob("*")) if p.suffix.lower() in IMAGE_EXTS
               and p.relative_to(img_root).as_posix() not in posed]
    if unposed:
        log.warning("%d images in %s have no pose in the COLMAP model and are ignored (e.g. %s)",
                    len(unposed), img_root, unposed[0].name)
    frames = _keep_existing(frames, img_root)
    pts = model.points
    index = {int(pid): i for i, pid in enumerate(pts.ids)}
    for f in frames:  # point3D ids -> row indices
        f.point_ids = np.array([index[int(i)] for i in f.point_ids if int(i) in index], np.int64)
    return Layout(frames, pts.xyz.astype(np.float32), pts.rgb, "colmap")


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not readable JSON ({e}); fix or regenerate it") from None


def _image_size(path: Path) -> tuple[int, int]:
    with PILImage.open(path) as im:
        return im.size


def _resolve(root: Path, file_path: str) -> Path:
    p = root / file_path
    if p.suffix.lower() not in IMAGE_EXTS:
        for ext in (".png", ".jpg", ".jpeg"):
            if p.with_name(p.name + ext).exists():
                return p.with_name(p.name + ext)
        return p.with_name(p.name + ".png")
    return p


def read_blender(data_dir: Path) -> Layout:
    frames = []
    for split in ("train", "test"):
        path = data_dir / f"transforms_{split}.json"
        if not path.exists():
            continue
        meta = _load_json(path)
        for fr in meta.get("frames", []):
            img = _resolve(data_dir, fr["file_path"])
            if not img.exists():
                frames.append(Frame(img.relative_to(data_dir).as_posix(), img, np.eye(3), np.eye(4), 0, 0))
                continue
            w, h = _image_size(img)
            f = 0.5 * w / math.tan(0.5 * float(meta["camera_angle_x"]))
            K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
            c2w = np.asarray(fr["transform_matrix"], np.float64) @ _OPENGL_TO_OPENCV
            frames.append(Frame(img.relative_to(data_dir).as_posix(), img, K, c2w, w, h, None, split))
    frames = _keep_existing(frames, data_dir)
    return Layout(frames, np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), "blender")


def read_nerfstudio(data_dir: Path) -> Layout:
    path = data_dir / "transforms.json"
    meta = _load_json(path)
    if meta.get("camera_model", "OPENCV") not in ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE"):
        raise DataError(f"{path}: camera_model {meta['camera_model']} is not supported; undistort the images first")
    frames = []
    for fr in meta.get("frames", []):
        get = lambda k, d=None: fr.get(k, meta.get(k, d))  # noqa: E731 per-frame value, else shared
        img = _resolve(data_dir, fr["file_path"])
        if not img.exists():
            frames.append(Frame(img.name, img, np.eye(3), np.eye(4), 0, 0))
            continue
        w, h = get("w"), get("h")
        if w is None or h is None:
            w, h = _image_size(img)
        fx = get("fl_x")
        if fx is None:
            fx = 0.5 * w / math.tan(0.5 * float(get("camera_angle_x")))
        fy = get("fl_y", fx)
        K = np.array([[fx, 0, get("cx", w / 2)], [0, fy, get("cy", h / 2)], [0, 0, 1.0]], np.float64)
        dist = [float(get(k, 0.0)) for k in ("k1", "k2", "p1", "p2")]
        c2w = np.asarray(fr["transform_matrix"], np.float64)
        if c2w.shape == (3, 4):
            c2w = np.vstack([c2w, [0, 0, 0, 1]])
        frames.append(Frame(img.relative_to(data_dir).as_posix(), img, K, c2w @ _OPENGL_TO_OPENCV, int(w), int(h),
                            dist if any(dist) else None))
    frames = _keep_existing(sorted(frames, key=lambda f: f.name), data_dir)
    return Layout(frames, np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), "nerfstudio")
