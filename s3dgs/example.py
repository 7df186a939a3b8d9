"""The built-in example scene: a small procedural "plant in a room", ray-cast exactly.

``python -m s3dgs.example OUT_DIR`` writes it as a COLMAP dataset::

    OUT_DIR/images/view_XX.png        80x60 RGB renders (Lambertian, view independent)
    OUT_DIR/sparse/0/*.bin            one PINHOLE camera, poses, ~1000 noisy sparse points with tracks
    OUT_DIR/gt_depth/view_XX.npy      exact z-depth (float32)
    OUT_DIR/depth/view_XX.png         monocular-like priors: relative inverse depth with an unknown
    OUT_DIR/depth/depth_meta.json     per-image scale and shift, smooth distortion, blur and noise
                                      (``--priors sequence``: one scale, shift and warp for all views)

``--sensor-depth`` writes it instead as a nerfstudio dataset with phone/RGB-D-like sensor depth::

    OUT_DIR/transforms.json           poses and intrinsics; each frame's depth_file_path names its depth map
    OUT_DIR/images/view_XX.png        the same renders
    OUT_DIR/depth/view_XX.png         16-bit depth in millimetres (one scene unit = SENSOR_UNIT_M metres), 2%
                                      multiplicative noise, 20% of the pixels holes (0)
    OUT_DIR/sparse_pc.ply             the sparse points (ply_file_path), no tracks
    OUT_DIR/gt_depth/view_XX.npy      exact z-depth (scene units)

The scene: a textured ground disc inside a cylindrical wall, a pot, a box, a ball, and a plant made of
thin stems (1-2 px wide in the images) carrying leaves: the structures photometric loss alone tends to
break. Everything is seeded, so the files are identical on every machine. ``python -m s3dgs.train`` with
no ``data_dir`` uses the copy cached in ``$XDG_CACHE_HOME/s3dgs/<VERSION>`` (default ``~/.cache``).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import plyfile

from preprocess.atomic_io import atomic_path, atomic_write_json
from preprocess.depth_png import DepthMeta, quantize, write_depth_png
from s3dgs.data import colmap

log = logging.getLogger(__name__)

VERSION = "example-v1"
WIDTH, HEIGHT, NUM_VIEWS = 80, 60, 24
FOV_X = np.deg2rad(60.0)
SEED = 0
WALL_RADIUS = 4.0
SENSOR_UNIT_M = 0.4  # metres per scene unit in the sensor depth (the poses stay in scene units: not metric)
SENSOR_NOISE, SENSOR_HOLES = 0.02, 0.2  # sensor depth: relative noise (std), share of pixels missing
LIGHT = np.array([0.4, -0.3, 0.85]) / np.linalg.norm([0.4, -0.3, 0.85])

# (centre, radius, rgb)
SPHERES = [((0.9, 0.5, 0.35), 0.35, (0.85, 0.25, 0.2)),
           ((0.0, 0.0, 1.25), 0.14, (0.25, 0.65, 0.2)), ((0.35, 0.2, 1.0), 0.12, (0.3, 0.7, 0.25)),
           ((-0.3, 0.25, 0.95), 0.11, (0.2, 0.6, 0.3)), ((-0.1, -0.35, 1.1), 0.12, (0.35, 0.75, 0.2))]
# (min corner, max corner, rgb)
BOXES = [((-1.3, -0.9, 0.0), (-0.7, -0.3, 0.5), (0.25, 0.35, 0.8)),
         ((-0.2, -0.2, 0.0), (0.2, 0.2, 0.3), (0.6, 0.4, 0.25))]  # the pot
# (end a, end b, radius, rgb): the plant's stems and branches, and a thin pole
STEMS = [((0.0, 0.0, 0.3), (0.0, 0.0, 1.25), 0.018, (0.3, 0.5, 0.15)),
         ((0.0, 0.0, 0.6), (0.35, 0.2, 1.0), 0.013, (0.3, 0.5, 0.15)),
         ((0.0, 0.0, 0.5), (-0.3, 0.25, 0.95), 0.013, (0.3, 0.5, 0.15)),
         ((0.0, 0.0, 0.7), (-0.1, -0.35, 1.1), 0.013, (0.3, 0.5, 0.15)),
         ((1.2, -0.9, 0.0), (1.2, -0.9, 1.4), 0.02, (0.9, 0.85, 0.3))]


def cache_dir() -> Path:
    """Where ``python -m s3dgs.train`` keeps the generated example: ``$XDG_CACHE_HOME/s3dgs/<VERSION>``."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "s3dgs" / VERSION


def camera_poses() -> tuple[np.ndarray, np.ndarray]:
    """``NUM_VIEWS`` cameras on a ring around the plant: intrinsics ``[3, 3]`` and camera-to-world ``[V, 4, 4]``
    (OpenCV axes), world z up."""
    rng = np.random.default_rng(SEED)
    f = 0.5 * WIDTH / np.tan(0.5 * FOV_X)
    K = np.array([[f, 0, WIDTH / 2], [0, f, HEIGHT / 2], [0, 0, 1.0]])
    poses = []
    for i in range(NUM_VIEWS):
        ang = 2 * np.pi * i / NUM_VIEWS + rng.uniform(-0.05, 0.05)
        eye = np.array([2.6 * np.cos(ang), 2.6 * np.sin(ang), 1.5 + 0.3 * np.sin(3 * ang)])
        target = np.array([0.0, 0.0, 0.55]) + rng.normal(0, 0.05, 3)
        fwd = (target - eye) / np.linalg.norm(target - eye)
        right = np.cross(fwd, [0, 0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(fwd, right)
        c2w = np.eye(4)
        c2w[:3, :3] = np.stack([right, down, fwd], 1)
        c2w[:3, 3] = eye
        poses.append(c2w)
    return K, np.stack(poses)


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1)


def _hit_sphere(o, d, c, r):
    oc = o - c
    b = _dot(oc, d)
    h = b * b - (_dot(oc, oc) - r * r)
    t = -b - np.sqrt(np.maximum(h, 0))
    t = np.where((h >= 0) & (t > 1e-6), t, np.inf)
    return t, lambda p: (p - c) / r


def _hit_box(o, d, lo, hi):
    inv = 1.0 / np.where(np.abs(d) < 1e-12, 1e-12, d)
    t0, t1 = (np.asarray(lo) - o) * inv, (np.asarray(hi) - o) * inv
    tmin, tmax = np.minimum(t0, t1).max(-1), np.maximum(t0, t1).min(-1)
    t = np.where((tmax >= tmin) & (tmin > 1e-6), tmin, np.inf)

    def normal(p):
        c, half = (np.asarray(lo) + hi) / 2, (np.asarray(hi) - lo) / 2
        q = (p - c) / half
        axis = np.abs(q).argmax(-1)
        n = np.zeros_like(p)
        n[np.arange(len(p)), axis] = np.sign(q[np.arange(len(p)), axis])
        return n
    return t, normal


def _hit_capsule(o, d, a, b, r):
    """Ray-capsule intersection (segment ``a``-``b``, radius ``r``), vectorised over rays."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ba, oa = b - a, o - a
    baba, bard, baoa = _dot(ba, ba), _dot(d, ba), _dot(oa, ba)
    rdoa, oaoa = _dot(d, oa), _dot(oa, oa)
    qa = baba - bard * bard
    qb = baba * rdoa - baoa * bard
    qc = baba * oaoa - baoa * baoa - r * r * baba
    h = qb * qb - qa * qc
    t_side = (-qb - np.sqrt(np.maximum(h, 0))) / np.where(np.abs(qa) < 1e-12, 1e-12, qa)
    y = baoa + t_side * bard
    side = (h >= 0) & (y > 0) & (y < baba) & (t_side > 1e-6)
    oc = np.where((y <= 0)[:, None], oa, o - b)
    cb = _dot(d, oc)
    ch = cb * cb - (_dot(oc, oc) - r * r)
    t_cap = -cb - np.sqrt(np.maximum(ch, 0))
    cap = (h >= 0) & ~side & (ch > 0) & (t_cap > 1e-6)
    t = np.where(side, t_side, np.where(cap, t_cap, np.inf))

    def normal(p):
        s = np.clip(_dot(p - a, ba) / baba, 0, 1)
        n = p - (a + s[:, None] * ba)
        return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    return t, normal


def _noise(p: np.ndarray, scale: float) -> np.ndarray:
    """Smooth deterministic 3-D texture in [-1, 1]."""
    f = np.array([[1.7, 2.3, 0.9], [-2.9, 1.1, 2.2], [0.7, -3.3, 1.9], [4.1, 2.7, -3.6]]) * scale
    return (np.sin(p @ f.T + np.array([0.3, 1.7, 2.9, 4.2])) * [0.4, 0.3, 0.2, 0.1]).sum(-1)


def cast(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rays ``o, d [R, 3]`` (``d`` unit) -> distance along the ray ``[R]`` and linear RGB ``[R, 3]``."""
    hits = []  # (t, normal fn, colour fn)
    t_g = np.where(d[:, 2] < -1e-9, -o[:, 2] / np.where(d[:, 2] < -1e-9, d[:, 2], -1), np.inf)

    def ground_rgb(p):
        check = ((np.floor(p[:, 0] / 0.5) + np.floor(p[:, 1] / 0.5)) % 2)[:, None]
        base = np.where(check > 0, [0.75, 0.7, 0.6], [0.45, 0.4, 0.35])
        return base * (1 + 0.25 * _noise(p, 3.0))[:, None]
    hits.append((t_g, lambda p: np.tile([0, 0, 1.0], (len(p), 1)), ground_rgb))
    # inside of the wall: the far root of |o_xy + t d_xy| = R
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    b = _dot(o[:, :2], d[:, :2])
    c = _dot(o[:, :2], o[:, :2]) - WALL_RADIUS**2
    t_w = (-b + np.sqrt(np.maximum(b * b - a * c, 0))) / np.maximum(a, 1e-12)

    def wall_rgb(p):
        ang = np.arctan2(p[:, 1], p[:, 0])
        stripe = (np.sin(ang * 12) > 0)[:, None]
        base = np.where(stripe, [0.55, 0.6, 0.75], [0.35, 0.4, 0.55])
        return base * (1 + 0.3 * _noise(p, 2.0) + 0.15 * np.sin(p[:, 2] * 6))[:, None]
    hits.append((np.where(a > 1e-12, t_w, np.inf),
                 lambda p: -np.concatenate([p[:, :2], np.zeros((len(p), 1))], 1) / WALL_RADIUS, wall_rgb))
    for c_, r_, rgb in SPHERES:
        t, n = _hit_sphere(o, d, np.asarray(c_), r_)
        hits.append((t, n, lambda p, rgb=rgb: np.asarray(rgb) * (1 + 0.3 * _noise(p, 8.0))[:, None]))
    for lo, hi, rgb in BOXES:
        t, n = _hit_box(o, d, lo, hi)
        hits.append((t, n, lambda p, rgb=rgb: np.asarray(rgb) * (1 + 0.2 * _noise(p, 6.0))[:, None]))
    for a_, b_, r_, rgb in STEMS:
        t, n = _hit_capsule(o, d, a_, b_, r_)
        hits.append((t, n, lambda p, rgb=rgb: np.tile(rgb, (len(p), 1))))
    ts = np.stack([h[0] for h in hits])
    which, t = ts.argmin(0), ts.min(0)
    p = o + t[:, None] * d
    rgb = np.zeros_like(o)
    for k, (_, normal, colour) in enumerate(hits):
        sel = which == k
        if sel.any():
            shade = 0.35 + 0.65 * np.clip(normal(p[sel]) @ LIGHT, 0, 1)
            rgb[sel] = colour(p[sel]) * shade[:, None]
    return t, np.clip(rgb, 0, 1)


def render_view(K: np.ndarray, c2w: np.ndarray, width: int = WIDTH, height: int = HEIGHT, ss: int = 3
                ) -> tuple[np.ndarray, np.ndarray]:
    """RGB ``[H, W, 3]`` (``ss x ss`` supersampled) and exact z-depth ``[H, W]`` (pixel centre) of one view."""
    def rays(offsets):
        u, v = np.meshgrid(np.arange(width) + offsets[0], np.arange(height) + offsets[1])
        dirs_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1).reshape(-1, 3)
        z_per_t = 1.0 / np.linalg.norm(dirs_cam, axis=-1)
        d = dirs_cam @ c2w[:3, :3].T * z_per_t[:, None]
        return np.broadcast_to(c2w[:3, 3], d.shape), d, z_per_t
    o, d, zt = rays((0.5, 0.5))
    t, _ = cast(o, d)
    depth = (t * zt).reshape(height, width)
    rgb = np.zeros((height * width, 3))
    for i in range(ss):
        for j in range(ss):
            o, d, _ = rays(((i + 0.5) / ss, (j + 0.5) / ss))
            rgb += cast(o, d)[1]
    return (rgb / ss**2).reshape(height, width, 3), depth


WarpTerm = tuple[float, float, float, float]  # amplitude, frequency (cycles per image), angle (rad), phase (rad)


@dataclass(frozen=True)
class PriorDistortion:
    """What makes a synthetic prior monocular-like, besides blur and noise: a smooth warp ``(1 + sum amp *
    sin(2 pi freq (u cos a + v sin a) + phase))`` in image coordinates ``u, v`` (divided by the longer side),
    an exponent ``gamma`` on the true inverse depth, and the output's ``scale`` and ``shift``."""

    warp: tuple[WarpTerm, ...]
    gamma: float
    scale: float
    shift: float


def draw_warp(rng: np.random.Generator) -> tuple[WarpTerm, ...]:
    """Three random :data:`WarpTerm` (amplitude 0.03-0.08, 0.3-1 cycles per image)."""
    return tuple((rng.uniform(0.03, 0.08), rng.uniform(0.3, 1.0), a, rng.uniform(0, 2 * np.pi))
                 for a in rng.uniform(0, np.pi, 3))


def draw_distortion(rng: np.random.Generator) -> PriorDistortion:
    """One random :class:`PriorDistortion` (what ``priors="sequence"`` shares between all frames)."""
    return PriorDistortion(draw_warp(rng), rng.uniform(0.85, 1.15), rng.uniform(1, 5), rng.uniform(-1, 1))


def make_prior(depth: np.ndarray, rng: np.random.Generator, shared: PriorDistortion | None = None,
               jitter: float = 0.0) -> np.ndarray:
    """A monocular-like prior from exact z-depth ``[H, W]``: relative inverse depth with a smooth
    low-frequency warp, a mild non-linearity, blur at edges and noise, under a random scale and shift
    (drawn for this image, or ``shared`` by a sequence). ``jitter`` (relative, 0 = none) moves the scale by up
    to ``jitter`` x itself and the shift by up to ``jitter`` x the scaled prior's mean, per image."""
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w] / max(h, w)
    terms = shared.warp if shared else draw_warp(rng)
    warp = sum(amp * np.sin(2 * np.pi * (freq * (u * np.cos(a) + v * np.sin(a))) + phase)
               for amp, freq, a, phase in terms)
    disp = (1.0 / depth) ** (shared.gamma if shared else rng.uniform(0.85, 1.15))
    disp = disp * (1 + warp)
    disp = cv2.GaussianBlur(disp.astype(np.float32), (0, 0), 0.6)
    disp = disp + rng.normal(0, 0.01 * disp.std(), disp.shape)
    scale, shift = (shared.scale, shared.shift) if shared else (rng.uniform(1, 5), rng.uniform(-1, 1))
    if jitter > 0:
        scale = scale * (1 + jitter * rng.uniform(-1, 1))
        shift = shift + jitter * rng.uniform(-1, 1) * scale * float(disp.mean())
    return (scale * disp + shift).astype(np.float32)


def sparse_points(K, poses, depths, images, rng, per_view: int = 60, noise: float = 0.01):
    """SfM-like sparse points: surface points at random textured pixels that at least two views see
    (checked against exact depth), with position noise ``noise`` (world units) and tracks."""
    H, W = depths[0].shape
    xyz, rgb, tracks = [], [], []
    for i, (c2w, depth) in enumerate(zip(poses, depths)):
        grad = np.abs(cv2.Laplacian(images[i].mean(-1).astype(np.float32), cv2.CV_32F))
        cand = np.flatnonzero(grad.ravel() > np.quantile(grad, 0.6))
        for pix in rng.choice(cand, size=min(per_view, len(cand)), replace=False):
            y, x = divmod(pix, W)
            z = depth[y, x]
            cam = np.array([(x + 0.5 - K[0, 2]) / K[0, 0] * z, (y + 0.5 - K[1, 2]) / K[1, 1] * z, z])
            world = c2w[:3, :3] @ cam + c2w[:3, 3]
            seen = []
            for j, (c2w_j, depth_j) in enumerate(zip(poses, depths)):
                pc = np.linalg.inv(c2w_j)[:3] @ np.append(world, 1)
                if pc[2] <= 0:
                    continue
                uj, vj = K[0, 0] * pc[0] / pc[2] + K[0, 2], K[1, 1] * pc[1] / pc[2] + K[1, 2]
                if 0 <= uj < W and 0 <= vj < H and abs(depth_j[int(vj), int(uj)] - pc[2]) < 0.02 * pc[2]:
                    seen.append((j, uj, vj))
            if len(seen) >= 2:
                xyz.append(world + rng.normal(0, noise, 3))
                rgb.append(images[i][y, x])
                tracks.append(seen)
    return np.array(xyz), np.array(rgb), tracks


def degrade_points(xyz: np.ndarray, rgb: np.ndarray, tracks: list, rng: np.random.Generator, num_points: int | None,
                   outliers: float) -> tuple[np.ndarray, np.ndarray, list]:
    """Keep ``num_points`` random points (all if None) and move a share ``outliers`` of them to uniform positions
    in the points' bounding box (they keep their colour and track: false matches, as SfM makes them)."""
    keep = np.sort(rng.choice(len(xyz), size=min(num_points or len(xyz), len(xyz)), replace=False))
    xyz, rgb, tracks = xyz[keep].copy(), rgb[keep], [tracks[i] for i in keep]
    bad = rng.random(len(xyz)) < outliers
    xyz[bad] = rng.uniform(xyz.min(0), xyz.max(0), (int(bad.sum()), 3))
    return xyz, rgb, tracks


def sensor_depth_mm(depth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Phone/RGB-D-like sensor depth from exact z-depth ``[H, W]`` (scene units): uint16 millimetres at
    :data:`SENSOR_UNIT_M` metres per unit, times ``1 + N(0, SENSOR_NOISE)``, a random :data:`SENSOR_HOLES` share
    of the pixels 0 (missing)."""
    mm = depth * SENSOR_UNIT_M * 1000 * (1 + rng.normal(0, SENSOR_NOISE, depth.shape))
    mm[rng.random(depth.shape) < SENSOR_HOLES] = 0
    return np.clip(mm.round(), 0, 65535).astype(np.uint16)


def write_points_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    """Points ``[P, 3]`` and colours ``[P, 3]`` in [0, 1] as a PLY ``vertex`` element (x y z float, red green blue
    uchar): what nerfstudio's ``ply_file_path`` names."""
    vertex = np.empty(len(xyz), [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"),
                                 ("blue", "u1")])
    for i, axis in enumerate("xyz"):
        vertex[axis] = xyz[:, i]
    for i, channel in enumerate(("red", "green", "blue")):
        vertex[channel] = (rgb[:, i] * 255).round()
    with atomic_path(path) as tmp:
        plyfile.PlyData([plyfile.PlyElement.describe(vertex, "vertex")]).write(str(tmp))


def write_nerfstudio(out: Path, names: list[str], K: np.ndarray, poses: np.ndarray, xyz: np.ndarray,
                     rgb: np.ndarray) -> None:
    """``transforms.json`` (OpenGL camera axes, each frame with ``depth_file_path`` depth/<name>.png in
    millimetres) and ``sparse_pc.ply`` for images ``images/<name>.png`` with intrinsics ``K [3, 3]`` and
    camera-to-world ``poses [V, 4, 4]`` (OpenCV axes)."""
    opengl = np.diag([1.0, -1.0, -1.0, 1.0])
    write_points_ply(out / "sparse_pc.ply", xyz, rgb)
    atomic_write_json(out / "transforms.json", {
        "camera_model": "OPENCV", "w": WIDTH, "h": HEIGHT, "fl_x": K[0, 0], "fl_y": K[1, 1], "cx": K[0, 2],
        "cy": K[1, 2], "depth_unit_scale_factor": 1e-3, "ply_file_path": "sparse_pc.ply",
        "frames": [{"file_path": f"images/{name}.png", "depth_file_path": f"depth/{name}.png",
                    "transform_matrix": (c2w @ opengl).tolist()} for name, c2w in zip(names, poses)]})


PRIOR_MODES = ("per_frame", "sequence")


def write_example(out_dir: str | Path, num_points: int | None = None, point_noise: float = 0.01,
                  outliers: float = 0.0, priors: str = "per_frame", prior_jitter: float = 0.0,
                  sensor_depth: bool = False) -> Path:
    """Generate the example scene into ``out_dir`` (created; existing files are overwritten). The defaults give
    the built-in scene (~1000 points, 0.01 noise); ``num_points``, ``point_noise`` (world units; the cameras
    are 2.6 from the plant) and ``outliers`` (share of points moved anywhere) make sparser, worse SfM.
    ``priors``: ``per_frame`` (a random scale, shift and warp per image) or ``sequence`` (one for all images, as
    a video depth model gives; depth_meta.json says ``normalization: per_sequence``); ``prior_jitter``: see
    :func:`make_prior`. ``sensor_depth``: a nerfstudio dataset with sensor depth instead of the COLMAP one with
    monocular priors (:func:`write_nerfstudio`, :func:`sensor_depth_mm`; the module docstring shows both)."""
    if priors not in PRIOR_MODES:
        raise ValueError(f"priors={priors!r}: use one of {PRIOR_MODES}")
    out = Path(out_dir)
    for sub in ("images", "gt_depth", "depth") + (() if sensor_depth else ("sparse/0",)):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    sensor_rng = np.random.default_rng(SEED + 1)  # its own stream: the COLMAP example's draws stay as they were
    K, poses = camera_poses()
    names = [f"view_{i:02d}" for i in range(NUM_VIEWS)]
    renders = [render_view(K, c2w) for c2w in poses]
    images = [np.clip(rgb, 0, 1) ** (1 / 2.2) for rgb, _ in renders]  # display gamma
    depths = [d for _, d in renders]
    meta = DepthMeta(backend="s3dgs.example", model="synthetic monocular prior", kind="inverse_depth",
                     relative=True, extra={"note": "relative inverse depth with per-image scale/shift, smooth "
                                                   "warp, blur and noise, made from the exact depth"})
    shared = None
    if priors == "sequence":
        shared = draw_distortion(rng)
        meta.extra = {"note": "relative inverse depth with one scale/shift and warp for the sequence, blur and "
                              "noise, made from the exact depth", "normalization": "per_sequence"}
    if prior_jitter > 0:
        meta.extra["prior_jitter"] = prior_jitter
    for name, img, depth in zip(names, images, depths):
        with atomic_path(out / "images" / f"{name}.png") as tmp:
            cv2.imwrite(str(tmp), cv2.cvtColor((img * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR))
        with atomic_path(out / "gt_depth" / f"{name}.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, depth.astype(np.float32))
        if sensor_depth:
            write_depth_png(out / "depth" / f"{name}.png", sensor_depth_mm(depth, sensor_rng))
            continue
        png, lo, hi = quantize(make_prior(depth, rng, shared, prior_jitter))
        write_depth_png(out / "depth" / f"{name}.png", png)
        meta.images[name] = {"min": lo, "max": hi, "width": WIDTH, "height": HEIGHT, "source": f"{name}.png"}
    if not sensor_depth:
        meta.save(out / "depth")
    xyz, rgb, tracks = sparse_points(K, poses, depths, images, rng, noise=point_noise)
    if num_points is not None or outliers > 0:
        xyz, rgb, tracks = degrade_points(xyz, rgb, tracks, rng, num_points, outliers)
    if sensor_depth:
        write_nerfstudio(out, names, K, poses, xyz, rgb)
        return out
    imgs = {i + 1: colmap.Image(i + 1, colmap.rotmat_to_qvec(np.linalg.inv(c2w)[:3, :3]), np.linalg.inv(c2w)[:3, 3],
                                1, f"{name}.png", np.zeros((0, 2)), np.zeros(0, np.int64))
            for i, (name, c2w) in enumerate(zip(names, poses))}
    pt_tracks = []
    for pid, seen in enumerate(tracks, start=1):
        tr = []
        for j, u, v in seen:
            im = imgs[j + 1]
            tr.append((j + 1, len(im.xys)))
            im.xys = np.vstack([im.xys, [u, v]])
            im.point3d_ids = np.append(im.point3d_ids, pid)
        pt_tracks.append(np.array(tr, np.int64))
    points = colmap.Points3D(np.arange(1, len(xyz) + 1), xyz, (rgb * 255).round().astype(np.uint8),
                             np.full(len(xyz), 0.5), pt_tracks)
    cam = colmap.Camera(1, "PINHOLE", WIDTH, HEIGHT, np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]]))
    colmap.write_model(colmap.Model({1: cam}, imgs, points), out / "sparse" / "0")
    return out


def ensure_example() -> Path:
    """The cached example scene, generated on first use (safe when several processes race)."""
    final = cache_dir()
    if (final / "sparse" / "0" / "points3D.bin").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    log.info("generating the built-in example scene in %s (once)", final)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-" + VERSION, dir=final.parent))
    try:
        write_example(tmp)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished first
            if not (final / "sparse" / "0" / "points3D.bin").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m s3dgs.example",
                                 description="Write the built-in example scene as a COLMAP dataset (or, with "
                                             "--sensor-depth, a nerfstudio one with sensor depth).")
    ap.add_argument("out_dir", help="folder to write (images/, sparse/0/, gt_depth/, depth/)")
    ap.add_argument("--sensor-depth", action="store_true",
                    help=f"write a nerfstudio dataset (transforms.json, sparse_pc.ply) whose frames carry "
                         f"depth_file_path: 16-bit millimetre PNGs of the exact depth at {SENSOR_UNIT_M} m per scene "
                         f"unit, {SENSOR_NOISE:.0%}% noise, {SENSOR_HOLES:.0%}% holes; no monocular priors")
    ap.add_argument("--points", type=int, default=None, help="keep this many sparse points (default: all, ~1000)")
    ap.add_argument("--point-noise", type=float, default=0.01,
                    help="sparse point position noise in world units (default 0.01; 0.08 = 3%% of the camera distance)")
    ap.add_argument("--outliers", type=float, default=0.0, help="share of sparse points moved anywhere (e.g. 0.1)")
    ap.add_argument("--priors", choices=PRIOR_MODES, default="per_frame",
                    help="per_frame: a random scale/shift and warp per image (default); sequence: one for all "
                         "images, like a video depth model (depth_meta.json normalization: per_sequence)")
    ap.add_argument("--prior-jitter", type=float, default=0.0,
                    help="per-image random scale/shift jitter on top, relative (e.g. 0.05; default 0)")
    args = ap.parse_args(argv)
    if (args.points is not None and args.points < 1 or not 0 <= args.outliers <= 1 or args.point_noise < 0
            or not 0 <= args.prior_jitter < 1):
        ap.error("--points must be >= 1, --outliers in [0, 1], --point-noise >= 0, --prior-jitter in [0, 1)")
    if args.sensor_depth and (args.priors != "per_frame" or args.prior_jitter):
        ap.error("--priors and --prior-jitter shape the monocular priors, which --sensor-depth does not write")
    try:
        out = write_example(args.out_dir, args.points, args.point_noise, args.outliers, args.priors,
                            args.prior_jitter, args.sensor_depth)
    except OSError as e:
        print(f"error: cannot write the example scene to {args.out_dir}: {e.strerror or e} ({e.filename}); "
              "pass a new or existing folder you can write to", file=sys.stderr)
        return 1
    print(f"wrote the example scene ({NUM_VIEWS} views, {WIDTH}x{HEIGHT}) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
