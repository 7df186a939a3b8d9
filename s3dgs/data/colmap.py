"""Read and write COLMAP sparse models (``cameras``, ``images``, ``points3D`` in .bin or .txt form).

Reading is pycolmap's (:class:`pycolmap.Reconstruction`, its C++ parsers of both forms) into our small
dataclasses; writing is our own implementation of COLMAP's documented file formats (little-endian binary, or
the text format with ``#`` comments), for the example scene and the tests. Poses are world-to-camera: a world
point ``X`` maps to camera coordinates ``R(qvec) @ X + tvec`` (OpenCV axes: x right, y down, z forward).
"""

from __future__ import annotations

import struct
import tempfile
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path

import numpy as np
import pycolmap

from preprocess.atomic_io import atomic_write_bytes
from preprocess.errors import S3dgsError

# model name -> (COLMAP model id, number of parameters), for writing
CAMERA_MODELS: dict[str, tuple[int, int]] = {
    "SIMPLE_PINHOLE": (0, 3), "PINHOLE": (1, 4), "SIMPLE_RADIAL": (2, 4), "RADIAL": (3, 5),
    "OPENCV": (4, 8), "OPENCV_FISHEYE": (5, 8), "FULL_OPENCV": (6, 12), "FOV": (7, 5),
    "SIMPLE_RADIAL_FISHEYE": (8, 4), "RADIAL_FISHEYE": (9, 5), "THIN_PRISM_FISHEYE": (10, 12),
}


class ColmapError(S3dgsError, ValueError):
    """A COLMAP model that cannot be read; the message names the file and the fix."""


@dataclass
class Camera:
    id: int
    model: str
    width: int
    height: int
    params: np.ndarray  # [P] float64, COLMAP's order for the model


@dataclass
class Image:
    id: int
    qvec: np.ndarray  # [4] world-to-camera rotation quaternion (w, x, y, z)
    tvec: np.ndarray  # [3] world-to-camera translation
    camera_id: int
    name: str
    xys: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # [M, 2] keypoints, pixels (written, not read)
    point3d_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [M], -1 = none (read: observed)

    def world_to_camera(self) -> np.ndarray:
        """``[4, 4]`` world-to-camera matrix."""
        m = np.eye(4)
        m[:3, :3] = qvec_to_rotmat(self.qvec)
        m[:3, 3] = self.tvec
        return m


@dataclass
class Points3D:
    ids: np.ndarray  # [P] int64
    xyz: np.ndarray  # [P, 3] float64
    rgb: np.ndarray  # [P, 3] uint8
    error: np.ndarray  # [P] float64 reprojection error, pixels
    tracks: list[np.ndarray]  # P x [L, 2] int (image_id, point2D index)

    @classmethod
    def empty(cls) -> "Points3D":
        return cls(np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros(0), [])


@dataclass
class Model:
    cameras: dict[int, Camera]
    images: dict[int, Image]
    points: Points3D


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    """Unit quaternion ``(w, x, y, z)`` -> ``[3, 3]`` rotation matrix (normalises first)."""
    w, x, y, z = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def rotmat_to_qvec(r: np.ndarray) -> np.ndarray:
    """``[3, 3]`` rotation matrix -> unit quaternion ``(w, x, y, z)`` with ``w >= 0`` (Shepperd's method)."""
    r = np.asarray(r, np.float64)
    tr = np.trace(r)
    i = int(np.argmax([tr, r[0, 0], r[1, 1], r[2, 2]]))
    if i == 0:
        s = 2 * np.sqrt(1 + tr)
        q = [s / 4, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    elif i == 1:
        s = 2 * np.sqrt(1 + r[0, 0] - r[1, 1] - r[2, 2])
        q = [(r[2, 1] - r[1, 2]) / s, s / 4, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
    elif i == 2:
        s = 2 * np.sqrt(1 + r[1, 1] - r[0, 0] - r[2, 2])
        q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, s / 4, (r[1, 2] + r[2, 1]) / s]
    else:
        s = 2 * np.sqrt(1 + r[2, 2] - r[0, 0] - r[1, 1])
        q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, s / 4]
    q = np.array(q) / np.linalg.norm(q)
    return -q if q[0] < 0 else q


# ---------------------------------------------------------------- reading

def find_model_dir(data_dir: Path) -> Path:
    """``data_dir/sparse/0`` or ``data_dir/sparse``, whichever holds a model."""
    for d in (data_dir / "sparse" / "0", data_dir / "sparse"):
        if any((d / f"cameras{ext}").exists() for ext in (".bin", ".txt")):
            return d
    raise ColmapError(f"{data_dir}: no COLMAP model (sparse/0/cameras.bin or .txt); run COLMAP first "
                      "or point data_dir at a folder with images/ and sparse/0/")


def read_model(model_dir: str | Path) -> Model:
    """Read the COLMAP model in ``model_dir`` with :class:`pycolmap.Reconstruction` (binary files preferred over
    text; ``points3D`` optional), keeping what training needs: cameras, poses, each image's observed 3D point
    ids (in its keypoints' order; the keypoints' coordinates are not read: ``xys`` is empty) and the points,
    sorted by id, with their colours and tracks."""
    d = Path(model_dir)
    ext = ".bin" if (d / "cameras.bin").exists() else ".txt"
    for stem in ("cameras", "images"):
        if not (d / f"{stem}{ext}").exists():
            raise ColmapError(f"{d / f'{stem}{ext}'}: missing; a COLMAP model needs cameras{ext} and images{ext}")
    try:
        rec = _reconstruction(d, ext)
    except (RuntimeError, ValueError, IndexError, OverflowError, MemoryError) as e:
        raise ColmapError(f"{d}: not a valid COLMAP model ({e}); re-export the model") from None
    if ext == ".bin":
        _check_sizes(d, rec)
    names = _text_names(d / "images.txt") if ext == ".txt" else {}
    cameras = {cid: Camera(cid, c.model_name, c.width, c.height, np.array(c.params, np.float64))
               for cid, c in sorted(rec.cameras.items())}
    images, observed = {}, {}
    for iid, im in sorted(rec.images.items()):
        pose, points2D = im.cam_from_world(), im.get_observation_points2D()
        ids = np.fromiter(map(attrgetter("point3D_id"), points2D), np.int64, len(points2D))
        images[iid] = Image(iid, pose.rotation.quat[[3, 0, 1, 2]], np.array(pose.translation), im.camera_id,
                            names.get(iid, im.name), point3d_ids=ids)
        observed[iid] = np.array(im.get_observation_point2D_idxs(), np.int64)
    return Model(cameras, images, _points(rec, images, observed))


def _reconstruction(d: Path, ext: str) -> pycolmap.Reconstruction:
    """The model in ``d``; one without a ``points3D`` file is read with an empty one (pycolmap needs the file)."""
    rec = pycolmap.Reconstruction()
    read = rec.read_binary if ext == ".bin" else rec.read_text
    if (d / f"points3D{ext}").exists():
        read(d)
        return rec
    with tempfile.TemporaryDirectory(prefix="colmap_") as tmp:
        for f in d.iterdir():
            (Path(tmp) / f.name).symlink_to(f.resolve())
        (Path(tmp) / f"points3D{ext}").write_bytes(bytes(8) if ext == ".bin" else b"")
        read(tmp)
    return rec


def _check_sizes(d: Path, rec: pycolmap.Reconstruction) -> None:
    """Refuse a binary model whose files are longer or shorter than what was read from them (pycolmap reads past
    the end of a truncated file without an error)."""
    cams = rec.cameras.values()
    images = rec.images.values()
    expected = {
        "cameras": 8 + sum(24 + 8 * len(c.params) for c in cams),
        "images": 8 + sum(73 + len(im.name.encode()) + 24 * im.num_points2D() for im in images),
        "points3D": 8 + 51 * rec.num_points3D() + 8 * rec.compute_num_observations()}
    for stem, size in expected.items():
        path = d / f"{stem}.bin"
        if path.exists() and path.stat().st_size != size:
            raise ColmapError(f"{path}: not a valid COLMAP {stem} file ({path.stat().st_size} bytes, its contents "
                              f"need {size}); re-export the model")


def _text_names(path: Path) -> dict[int, str]:
    """Image id -> name from ``images.txt``: pycolmap's text reader ends a name at its first space."""
    lines = [ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#")]
    return {int(tok[0]): " ".join(tok[9:]) for tok in map(str.split, lines[::2]) if len(tok) > 9}


def _points(rec: pycolmap.Reconstruction, images: dict[int, Image], observed: dict[int, np.ndarray]) -> Points3D:
    """The 3D points sorted by id; their tracks from the images' observations (``observed``: image id -> the
    keypoint index of each of its :attr:`Image.point3d_ids`)."""
    n = rec.num_points3D()
    if n == 0:
        return Points3D.empty()
    ids = np.fromiter(rec.points3D.keys(), np.int64, n)
    order = np.argsort(ids)
    values = list(rec.points3D.values())
    xyz = np.concatenate(list(map(attrgetter("xyz"), values))).reshape(n, 3)[order]
    rgb = np.concatenate(list(map(attrgetter("color"), values))).reshape(n, 3)[order]
    error = np.fromiter(map(attrgetter("error"), values), np.float64, n)[order]
    ids = ids[order]
    # every observation as (image id, keypoint index), grouped by the point's row
    image_ids = np.repeat(list(observed), list(map(len, observed.values()))).astype(np.int64)
    index = np.concatenate([*observed.values(), np.zeros(0, np.int64)])
    rows = rows_of(ids, np.concatenate([im.point3d_ids for im in images.values()] + [np.zeros(0, np.int64)]))
    known = rows >= 0
    by_point = np.argsort(rows[known], kind="stable")
    pairs = np.stack([image_ids, index], -1)[known][by_point]
    tracks = np.split(pairs, np.cumsum(np.bincount(rows[known], minlength=n))[:-1])
    return Points3D(ids, xyz, rgb, error, tracks)


def rows_of(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Row of each of ``wanted [M]`` in the sorted ``ids [P]``; -1 for an id not among them."""
    if len(ids) == 0:
        return np.full(len(wanted), -1, np.int64)
    rows = np.minimum(np.searchsorted(ids, wanted), len(ids) - 1)
    return np.where(ids[rows] == wanted, rows, -1)


# ---------------------------------------------------------------- writing

def write_model(model: Model, model_dir: str | Path, ext: str = ".bin") -> None:
    """Write ``model`` to ``model_dir`` as ``.bin`` or ``.txt`` files (each written atomically). Its images need
    their keypoints (``xys``): a model from :func:`read_model` has none (edit and write such one with pycolmap)."""
    for im in model.images.values():
        if len(im.xys) != len(im.point3d_ids):
            raise ValueError(f"image {im.name}: {len(im.xys)} keypoints for {len(im.point3d_ids)} point3D ids; "
                             "write a model read by read_model with pycolmap instead")
    d = Path(model_dir)
    d.mkdir(parents=True, exist_ok=True)
    if ext == ".bin":
        data = {"cameras": _cameras_bin(model.cameras), "images": _images_bin(model.images),
                "points3D": _points_bin(model.points)}
    elif ext == ".txt":
        data = {"cameras": _cameras_txt(model.cameras), "images": _images_txt(model.images),
                "points3D": _points_txt(model.points)}
    else:
        raise ValueError(f"ext must be .bin or .txt, got {ext!r}")
    for stem, blob in data.items():
        atomic_write_bytes(d / f"{stem}{ext}", blob)


def _cameras_bin(cams: dict[int, Camera]) -> bytes:
    out = [struct.pack("<Q", len(cams))]
    for c in cams.values():
        out.append(struct.pack("<iiQQ", c.id, CAMERA_MODELS[c.model][0], c.width, c.height))
        out.append(np.asarray(c.params, "<f8").tobytes())
    return b"".join(out)


def _images_bin(images: dict[int, Image]) -> bytes:
    out = [struct.pack("<Q", len(images))]
    for im in images.values():
        out.append(struct.pack("<i7di", im.id, *im.qvec, *im.tvec, im.camera_id))
        out.append(im.name.encode() + b"\x00")
        rec = np.zeros(len(im.point3d_ids), np.dtype([("x", "<f8"), ("y", "<f8"), ("id", "<i8")]))
        rec["x"], rec["y"], rec["id"] = im.xys[:, 0], im.xys[:, 1], im.point3d_ids
        out.append(struct.pack("<Q", len(rec)) + rec.tobytes())
    return b"".join(out)


def _points_bin(p: Points3D) -> bytes:
    out = [struct.pack("<Q", len(p.ids))]
    for i in range(len(p.ids)):
        out.append(struct.pack("<Q3d3BdQ", p.ids[i], *p.xyz[i], *p.rgb[i], p.error[i], len(p.tracks[i])))
        out.append(np.asarray(p.tracks[i], "<i4").tobytes())
    return b"".join(out)


def _cameras_txt(cams: dict[int, Camera]) -> bytes:
    lines = ["# CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
    lines += [" ".join([str(c.id), c.model, str(c.width), str(c.height), *map(repr, map(float, c.params))])
              for c in cams.values()]
    return ("\n".join(lines) + "\n").encode()


def _images_txt(images: dict[int, Image]) -> bytes:
    lines = ["# IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME", "# POINTS2D[] as (X, Y, POINT3D_ID)"]
    for im in images.values():
        lines.append(" ".join([str(im.id), *map(repr, map(float, im.qvec)), *map(repr, map(float, im.tvec)),
                               str(im.camera_id), im.name]))
        lines.append(" ".join(f"{x!r} {y!r} {int(pid)}" for (x, y), pid in
                              zip(im.xys.astype(float).tolist(), im.point3d_ids)))
    return ("\n".join(lines) + "\n").encode()


def _points_txt(p: Points3D) -> bytes:
    lines = ["# POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)"]
    for i in range(len(p.ids)):
        lines.append(" ".join([str(int(p.ids[i])), *map(repr, p.xyz[i].astype(float).tolist()),
                               *map(str, p.rgb[i].tolist()), repr(float(p.error[i])),
                               *map(str, np.asarray(p.tracks[i]).reshape(-1).tolist())]))
    return ("\n".join(lines) + "\n").encode()
