"""Dataset layouts -> a list of :class:`Frame` (one posed image, not yet loaded).

Three layouts: COLMAP (``images/`` + ``sparse/0``, optional ``masks/``), NeRF/Blender
(``transforms_{train,test}.json``) and nerfstudio / instant-ngp (``transforms.json``, optional
``ply_file_path`` points, per-frame ``mask_path`` and sensor ``depth_file_path`` with
``depth_unit_scale_factor``). Poses come out camera-to-world in OpenCV axes
(x right, y down, z forward); intrinsics at the image files' full resolution.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import plyfile
from PIL import Image as PILImage

from preprocess.errors import S3dgsError
from s3dgs.data import colmap

log = logging.getLogger(__name__)

# training images: 8/16-bit display-referred files. No OpenEXR: linear HDR radiance would need an exposure and
# tone curve that the [0, 1] photometric loss does not define (convert such renders to PNG first).
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
# COLMAP camera model -> (number of focal lengths, distortion model, distortion coefficients from the
# params that follow fx[, fy], cx, cy). Fisheye models are OpenCV's (theta_d = theta (1 + k1 theta^2 + ...)).
_COLMAP_CAMERAS = {
    "SIMPLE_PINHOLE": (1, "opencv", lambda d: ()), "PINHOLE": (2, "opencv", lambda d: ()),
    "SIMPLE_RADIAL": (1, "opencv", lambda d: (d[0], 0, 0, 0)), "RADIAL": (1, "opencv", lambda d: (d[0], d[1], 0, 0)),
    "OPENCV": (2, "opencv", lambda d: d[:4]), "FULL_OPENCV": (2, "opencv", lambda d: d[:8]),
    "OPENCV_FISHEYE": (2, "fisheye", lambda d: d[:4]),
    "SIMPLE_RADIAL_FISHEYE": (1, "fisheye", lambda d: (d[0], 0, 0, 0)),
    "RADIAL_FISHEYE": (1, "fisheye", lambda d: (d[0], d[1], 0, 0)),
}
# nerfstudio camera_model -> distortion model; perspective models take k1 k2 p1 p2 k3, fisheye k1..k4.
_NERFSTUDIO_CAMERAS = {"OPENCV": "opencv", "PINHOLE": "opencv", "SIMPLE_PINHOLE": "opencv",
                       "SIMPLE_RADIAL": "opencv", "RADIAL": "opencv", "OPENCV_FISHEYE": "fisheye"}
_COEFF_KEYS = {"opencv": ("k1", "k2", "p1", "p2", "k3"), "fisheye": ("k1", "k2", "k3", "k4")}
_OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


class DataError(S3dgsError, ValueError):
    """A dataset that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class Distortion:
    """Lens distortion, removed at load time with OpenCV (the undistorted image keeps the same ``K``).

    ``model="opencv"``: ``cv2.undistort``'s vector ``(k1, k2, p1, p2[, k3[, k4, k5, k6]])``;
    ``model="fisheye"``: ``cv2.fisheye``'s ``(k1, k2, k3, k4)``."""

    model: str
    coeffs: tuple[float, ...]


def distortion(model: str, coeffs: Iterable[float]) -> Distortion | None:
    """A :class:`Distortion`, or None when every coefficient is 0 (a pinhole camera)."""
    coeffs = tuple(float(c) for c in coeffs)
    return Distortion(model, coeffs) if any(coeffs) else None


@dataclass
class Frame:
    name: str  # unique image name (relative path inside the image folder)
    path: Path  # image file
    K: np.ndarray  # [3, 3] intrinsics at full resolution, pixel centres at +0.5
    camtoworld: np.ndarray  # [4, 4] OpenCV axes
    width: int
    height: int
    distortion: Distortion | None = None  # None = pinhole
    split: str | None = None  # "train"/"test" when the layout fixes it
    point_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # sparse points seen
    mask_path: Path | None = None  # greyscale / 1-bit image, nonzero = pixel counts in the losses
    depth_path: Path | None = None  # sensor depth map (nerfstudio depth_file_path), any preprocess.depth_files kind
    depth_unit_scale: float = 1e-3  # metres per stored depth value (depth_unit_scale_factor; default mm)


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


def _colmap_camera(cam: colmap.Camera, data_dir: Path) -> tuple[np.ndarray, Distortion | None]:
    """COLMAP camera -> ``[3, 3]`` intrinsics and distortion."""
    if cam.model not in _COLMAP_CAMERAS:
        raise DataError(f"{data_dir}: camera model {cam.model} is not supported; undistort with "
                        "`colmap image_undistorter` first")
    n_focal, model, coeffs = _COLMAP_CAMERAS[cam.model]
    p = cam.params
    fx, fy = (p[0], p[0]) if n_focal == 1 else (p[0], p[1])
    cx, cy = p[n_focal], p[n_focal + 1]
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]]), distortion(model, coeffs(p[n_focal + 2:]))


def _colmap_masks(frames: list[Frame], masks_dir: Path) -> None:
    """Attach ``masks_dir/<image name>.png`` or ``masks_dir/<image name without extension>.png`` to each frame."""
    if not masks_dir.is_dir():
        return
    for f in frames:
        found = [m for m in (masks_dir / f"{f.name}.png", masks_dir / Path(f.name).with_suffix(".png")) if m.exists()]
        f.mask_path = found[0] if found else None
    unmasked = [f.name for f in frames if f.mask_path is None]
    if unmasked:
        log.warning("%d of %d images have no mask in %s (<image name>.png) and train unmasked (e.g. %s)",
                    len(unmasked), len(frames), masks_dir, ", ".join(unmasked[:3]))


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
        K, dist = _colmap_camera(cam, data_dir)
        frames.append(Frame(im.name, img_root / im.name, K, np.linalg.inv(im.world_to_camera()), cam.width,
                            cam.height, dist, None, im.point3d_ids[im.point3d_ids >= 0]))
    posed = {f.name for f in frames}
    unposed = [p for p in sorted(img_root.rglob("*")) if p.suffix.lower() in IMAGE_EXTS
               and p.relative_to(img_root).as_posix() not in posed]
    if unposed:
        log.warning("%d images in %s have no pose in the COLMAP model and are ignored (e.g. %s)",
                    len(unposed), img_root, unposed[0].name)
    frames = _keep_existing(frames, img_root)
    _colmap_masks(frames, data_dir / "masks")
    pts = model.points
    for f in frames:  # point3D ids -> row indices
        rows = colmap.rows_of(pts.ids, f.point_ids)
        f.point_ids = rows[rows >= 0]
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


def read_ply_points(path: Path, transforms: Path) -> tuple[np.ndarray, np.ndarray]:
    """``vertex`` element of a PLY -> positions ``[P, 3]`` float32 and colours ``[P, 3]`` uint8
    (``red green blue`` uchar properties; grey 128 without them)."""
    fix = f"fix ply_file_path in {transforms.name} or remove it"
    if not path.is_file():
        raise DataError(f"{path}: point cloud named by ply_file_path does not exist; {fix}")
    try:
        v = plyfile.PlyData.read(str(path))["vertex"]
        xyz = np.stack([v["x"], v["y"], v["z"]], -1).astype(np.float32)
        names = {p.name for p in v.properties}
        rgb = (np.stack([v["red"], v["green"], v["blue"]], -1) if {"red", "green", "blue"} <= names
               else np.full(xyz.shape, 128, np.uint8))
    except (OSError, ValueError, KeyError, plyfile.PlyParseError) as e:
        raise DataError(f"{path}: not a readable PLY point cloud with x y z vertices ({e}); {fix}") from None
    if rgb.dtype != np.uint8:
        raise DataError(f"{path}: colours are {rgb.dtype}, expected uchar red green blue; {fix}")
    return xyz, rgb


def _nerfstudio_frame(fr: dict, meta: dict, data_dir: Path, path: Path) -> Frame:
    """One ``frames`` entry of ``transforms.json``; its camera fields override the shared ones."""
    get = lambda k, d=None: fr.get(k, meta.get(k, d))  # noqa: E731 per-frame value, else shared
    img = _resolve(data_dir, fr["file_path"])
    if not img.exists():
        return Frame(img.name, img, np.eye(3), np.eye(4), 0, 0)
    camera_model = get("camera_model", "OPENCV")
    if camera_model not in _NERFSTUDIO_CAMERAS:
        raise DataError(f"{path}: camera_model {camera_model} is not supported; undistort the images first "
                        "(e.g. ns-process-data / colmap image_undistorter)")
    w, h = get("w"), get("h")
    if w is None or h is None:
        w, h = _image_size(img)
    fx = get("fl_x")
    if fx is None:
        fx = 0.5 * w / math.tan(0.5 * float(get("camera_angle_x")))
    fy = get("fl_y", fx)
    K = np.array([[fx, 0, get("cx", w / 2)], [0, fy, get("cy", h / 2)], [0, 0, 1.0]], np.float64)
    model = _NERFSTUDIO_CAMERAS[camera_model]
    dist = distortion(model, [get(k, 0.0) for k in _COEFF_KEYS[model]])
    c2w = np.asarray(fr["transform_matrix"], np.float64)
    if c2w.shape == (3, 4):
        c2w = np.vstack([c2w, [0, 0, 0, 1]])
    mask = data_dir / fr["mask_path"] if fr.get("mask_path") else None
    if mask is not None and not mask.is_file():
        raise DataError(f"{mask}: mask_path of {fr['file_path']} in {path.name} does not exist; fix mask_path "
                        "or remove it")
    scale = get("depth_unit_scale_factor", 1e-3)
    if not (isinstance(scale, (int, float)) and scale > 0):
        raise DataError(f"{path}: depth_unit_scale_factor {scale!r} of {fr['file_path']}: must be a positive number "
                        "(metres per stored depth value, e.g. 0.001 for millimetres)")
    depth = data_dir / fr["depth_file_path"] if fr.get("depth_file_path") else None
    return Frame(img.relative_to(data_dir).as_posix(), img, K, c2w @ _OPENGL_TO_OPENCV, int(w), int(h), dist,
                 mask_path=mask, depth_path=depth, depth_unit_scale=float(scale))


def names_sensor_depth(data_dir: Path) -> bool:
    """Whether ``data_dir`` is a nerfstudio dataset whose frames name sensor depth (``depth_file_path``)."""
    path = data_dir / "transforms.json"
    return (detect_layout(data_dir) == "nerfstudio"
            and any(fr.get("depth_file_path") for fr in _load_json(path).get("frames", [])))


def read_nerfstudio(data_dir: Path) -> Layout:
    path = data_dir / "transforms.json"
    meta = _load_json(path)
    frames = [_nerfstudio_frame(fr, meta, data_dir, path) for fr in meta.get("frames", [])]
    frames = _keep_existing(sorted(frames, key=lambda f: f.name), data_dir)
    if meta.get("ply_file_path"):  # same world frame as transform_matrix
        points, rgb = read_ply_points(data_dir / meta["ply_file_path"], path)
    else:
        points, rgb = np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)
    return Layout(frames, points, rgb, "nerfstudio")
