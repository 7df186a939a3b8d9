"""Read and write COLMAP sparse models (``cameras``, ``images``, ``points3D`` in .bin or .txt form).

Our own implementation of COLMAP's documented file formats (little-endian binary, or the text
format with ``#`` comments), so no pycolmap build is needed. Poses are world-to-camera: a world
point ``X`` maps to camera coordinates ``R(qvec) @ X + tvec`` (OpenCV axes: x right, y down, z forward).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from preprocess.atomic_io import atomic_write_bytes
from preprocess.errors import S3dgsError

# model name -> (COLMAP model id, number of parameters)
CAMERA_MODELS: dict[str, tuple[int, int]] = {
    "SIMPLE_PINHOLE": (0, 3), "PINHOLE": (1, 4), "SIMPLE_RADIAL": (2, 4), "RADIAL": (3, 5),
    "OPENCV": (4, 8), "OPENCV_FISHEYE": (5, 8), "FULL_OPENCV": (6, 12), "FOV": (7, 5),
    "SIMPLE_RADIAL_FISHEYE": (8, 4), "RADIAL_FISHEYE": (9, 5), "THIN_PRISM_FISHEYE": (10, 12),
}
MODEL_BY_ID = {mid: (name, n) for name, (mid, n) in CAMERA_MODELS.items()}


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
    xys: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # [M, 2] keypoints, pixels
    point3d_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [M], -1 = none

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
    """Read a COLMAP model from ``model_dir`` (binary files preferred over text; points optional)."""
    d = Path(model_dir)
    ext = ".bin" if (d / "cameras.bin").exists() else ".txt"
    readers = {".bin": (_read_cameras_bin, _read_images_bin, _read_points_bin),
               ".txt": (_read_cameras_txt, _read_images_txt, _read_points_txt)}[ext]
    parts = []
    for reader, stem in zip(readers, ("cameras", "images", "points3D")):
        path = d / f"{stem}{ext}"
        if not path.exists():
            if stem == "points3D":
                parts.append(Points3D.empty())
                continue
            raise ColmapError(f"{path}: missing; a COLMAP model needs cameras{ext} and images{ext}")
        try:
            parts.append(reader(path))
        except (struct.error, ValueError, IndexError, KeyError) as e:
            raise ColmapError(f"{path}: not a valid COLMAP {stem} file ({e}); re-export the model") from None
    return Model(*parts)


class _Reader:
    def __init__(self, data: bytes):
        self.f = io.BytesIO(data)

    def read(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        buf = self.f.read(size)
        if len(buf) != size:
            raise ValueError("file ends early")
        return struct.unpack("<" + fmt, buf)

    def read_array(self, dtype: np.dtype, count: int) -> np.ndarray:
        dtype = np.dtype(dtype)
        buf = self.f.read(dtype.itemsize * count)
        if len(buf) != dtype.itemsize * count:
            raise ValueError("file ends early")
        return np.frombuffer(buf, dtype)

    def read_cstring(self) -> str:
        chars = bytearray()
        while (c := self.f.read(1)) != b"\x00":
            if not c:
                raise ValueError("file ends early")
            chars += c
        return chars.decode()


def _read_cameras_bin(path: Path) -> dict[int, Camera]:
    r = _Reader(path.read_bytes())
    cams = {}
    for _ in range(r.read("Q")[0]):
        cid, mid, w, h = r.read("iiQQ")
        if mid not in MODEL_BY_ID:
            raise ValueError(f"unknown camera model id {mid}")
        name, n = MODEL_BY_ID[mid]
        cams[cid] = Camera(cid, name, w, h, np.array(r.read(f"{n}d")))
    return cams


def _read_images_bin(path: Path) -> dict[int, Image]:
    r = _Reader(path.read_bytes())
    images = {}
    for _ in range(r.read("Q")[0]):
        iid, *rest = r.read("i7di")
        name = r.read_cstring()
        m = r.read("Q")[0]
        rec = r.read_array(np.dtype([("x", "<f8"), ("y", "<f8"), ("id", "<i8")]), m)
        images[iid] = Image(iid, np.array(rest[0:4]), np.array(rest[4:7]), rest[7], name,
                            np.stack([rec["x"], rec["y"]], -1), rec["id"].astype(np.int64))
    return images


def _read_points_bin(path: Path) -> Points3D:
    r = _Reader(path.read_bytes())
    n = r.read("Q")[0]
    ids, xyz, rgb, err, tracks = np.zeros(n, np.int64), np.zeros((n, 3)), np.zeros((n, 3), np.uint8), np.zeros(n), []
    for i in range(n):
        pid, x, y, z, cr, cg, cb, e, length = r.read("Q3d3BdQ")
        ids[i], xyz[i], rgb[i], err[i] = pid, (x, y, z), (cr, cg, cb), e
        tracks.append(r.read_array(np.dtype("<i4"), 2 * length).reshape(-1, 2).astype(np.int64))
    return Points3D(ids, xyz, rgb, err, tracks)


def _data_lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def _read_cameras_txt(path: Path) -> dict[int, Camera]:
    cams = {}
    for ln in _data_lines(path):
        tok = ln.split()
        model = tok[1]
        if model not in CAMERA_MODELS:
            raise ValueError(f"unknown camera model {model}")
        cams[int(tok[0])] = Camera(int(tok[0]), model, int(tok[2]), int(tok[3]), np.array(tok[4:], np.float64))
    return cams


def _read_images_txt(path: Path) -> dict[int, Image]:
    # Two lines per image; the second (keypoints) may be empty, so read raw lines, skipping comments only.
    lines = [ln.strip() for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#")]
    while lines and not lines[-1]:
        lines.pop()
    images = {}
    i = 0
    while i < len(lines):
        if not lines[i]:
            i += 1
            continue
        tok = lines[i].split()
        iid = int(tok[0])
        pts = np.array(lines[i + 1].split() if i + 1 < len(lines) else [], np.float64).reshape(-1, 3)
        images[iid] = Image(iid, np.array(tok[1:5], np.float64), np.array(tok[5:8], np.float64), int(tok[8]),
                            " ".join(tok[9:]), pts[:, :2], pts[:, 2].astype(np.int64))
        i += 2
    return images


def _read_points_txt(path: Path) -> Points3D:
    lines = _data_lines(path)
    if not lines:
        return Points3D.empty()
    ids, xyz, rgb, err, tracks = [], [], [], [], []
    for ln in lines:
        tok = ln.split()
        ids.append(int(tok[0]))
        xyz.append([float(t) for t in tok[1:4]])
        rgb.append([int(t) for t in tok[4:7]])
        err.append(float(tok[7]))
        tracks.append(np.array(tok[8:], np.int64).reshape(-1, 2))
    return Points3D(np.array(ids, np.int64), np.array(xyz), np.array(rgb, np.uint8), np.array(err), tracks)


# ---------------------------------------------------------------- writing

def write_model(model: Model, model_dir: str | Path, ext: str = ".bin") -> None:
    """Write ``model`` to ``model_dir`` as ``.bin`` or ``.txt`` files (each written atomically)."""
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
