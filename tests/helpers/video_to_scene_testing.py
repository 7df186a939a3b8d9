"""A synthetic capture with known poses, for tests and benchmarks: a textured room with a textured box in
it, rendered by ray casting along a smooth camera arc, and the similarity alignment that compares poses.

Textures are band-limited random noise (several octaves), so SIFT finds blobs at every scale and H.264
keeps them. Cameras use OpenCV axes (x right, y down, z forward) and a pinhole with focal ``0.8 * width``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from preprocess.atomic_io import atomic_path
from preprocess.video_depth.vis import Mp4Writer

ROOM = 4.0      # half-size of the room (walls, floor, ceiling), world units
BOX = 0.8       # half-size of the box standing in the middle
TEXTURE = 512   # texels per face side


@dataclass(frozen=True)
class Scene:
    """Per-face textures ``[12, T, T, 3]`` uint8: six room faces (inside) then six box faces (outside)."""

    textures: np.ndarray


def noise_texture(rng: np.random.Generator, size: int = TEXTURE) -> np.ndarray:
    """uint8 ``[size, size, 3]``: sum of blurred noise octaves, contrast-stretched to 0..255."""
    out = np.zeros((size, size, 3), np.float32)
    for sigma, weight in ((1.5, 0.6), (4.0, 1.0), (10.0, 1.0)):
        layer = cv2.GaussianBlur(rng.standard_normal((size, size, 3)).astype(np.float32), (0, 0), sigma)
        out += weight * layer / layer.std()
    out = (out - out.mean()) / out.std()
    return np.clip(128 + 45 * out, 0, 255).astype(np.uint8)


def make_scene(seed: int = 0) -> Scene:
    rng = np.random.default_rng(seed)
    return Scene(np.stack([noise_texture(rng) for _ in range(12)]))


def camera_path(n: int, arc_deg: float = 100.0, radius: float = 2.4) -> tuple[np.ndarray, np.ndarray]:
    """``n`` poses on a smooth arc around the box, looking at it, bobbing in height.

    Returns camera-to-world rotations ``[n, 3, 3]`` (columns: camera x, y, z axes in world) and centres ``[n, 3]``.
    World y points down (like the camera's), so the floor is at ``y = +ROOM``."""
    t = np.linspace(0.0, 1.0, n)
    angle = np.deg2rad(arc_deg) * (t - 0.5)
    centres = np.stack([radius * np.sin(angle), -0.4 - 0.3 * np.sin(2 * np.pi * t), -radius * np.cos(angle)], axis=1)
    target = np.array([0.0, 0.0, 0.0])
    rots = []
    for c in centres:
        z = (target - c) / np.linalg.norm(target - c)
        x = np.cross(np.array([0.0, 1.0, 0.0]), z)
        x /= np.linalg.norm(x)
        rots.append(np.stack([x, np.cross(z, x), z], axis=1))
    return np.stack(rots), centres


def intrinsics(width: int, height: int) -> np.ndarray:
    """``[3, 3]`` pinhole of the renders: focal ``0.8 * width``, principal point at the centre."""
    f = 0.8 * width
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])


def _face_hits(origin: np.ndarray, dirs: np.ndarray, half: float, inside: bool) -> tuple[np.ndarray, np.ndarray,
                                                                                             np.ndarray]:
    """Ray hits on an axis-aligned cube of half-size ``half`` at the origin.

    Returns ``t [N]`` (inf where missed), ``face [N]`` (0..5: -x, +x, -y, +y, -z, +z) and ``uv [N, 2]`` in 0..1."""
    n = dirs.shape[0]
    best_t = np.full(n, np.inf)
    face = np.zeros(n, np.int64)
    uv = np.zeros((n, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis in range(3):
            for side, sign in ((0, -1.0), (1, 1.0)):
                t = (sign * half - origin[axis]) / dirs[:, axis]
                p = origin + t[:, None] * dirs
                others = [a for a in range(3) if a != axis]
                on_face = (np.abs(p[:, others]) <= half).all(axis=1)
                facing = dirs[:, axis] * sign > 0 if inside else dirs[:, axis] * sign < 0
                hit = (t > 1e-6) & on_face & facing & (t < best_t)
                best_t[hit] = t[hit]
                face[hit] = 2 * axis + side
                uv[hit] = (p[hit][:, others] + half) / (2 * half)
    return best_t, face, uv


def render(scene: Scene, rotation: np.ndarray, centre: np.ndarray, width: int, height: int) -> np.ndarray:
    """RGB uint8 ``[height, width, 3]`` seen by a camera with camera-to-world ``rotation [3, 3]`` at ``centre [3]``."""
    K = intrinsics(width, height)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    cam = np.stack([(xs + 0.5 - K[0, 2]) / K[0, 0], (ys + 0.5 - K[1, 2]) / K[1, 1], np.ones_like(xs)], axis=-1)
    dirs = cam.reshape(-1, 3) @ rotation.T
    t_room, f_room, uv_room = _face_hits(centre, dirs, ROOM, inside=True)
    t_box, f_box, uv_box = _face_hits(centre, dirs, BOX, inside=False)
    on_box = t_box < t_room
    face = np.where(on_box, f_box + 6, f_room)
    uv = np.where(on_box[:, None], uv_box, uv_room)
    texel = np.clip(uv * (TEXTURE - 1), 0, TEXTURE - 1)
    # bilinear lookup, so the rendered texture stays band-limited (no aliasing that SIFT would chase)
    x0, y0 = np.floor(texel[:, 0]).astype(int), np.floor(texel[:, 1]).astype(int)
    x1, y1 = np.minimum(x0 + 1, TEXTURE - 1), np.minimum(y0 + 1, TEXTURE - 1)
    fx, fy = (texel[:, 0] - x0)[:, None], (texel[:, 1] - y0)[:, None]
    tex = scene.textures
    rgb = ((1 - fx) * (1 - fy) * tex[face, y0, x0] + fx * (1 - fy) * tex[face, y0, x1]
           + (1 - fx) * fy * tex[face, y1, x0] + fx * fy * tex[face, y1, x1])
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8).reshape(height, width, 3)


def render_path(scene: Scene, n: int, width: int, height: int, arc_deg: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    """Frames uint8 ``[n, H, W, 3]`` and true camera centres ``[n, 3]`` along :func:`camera_path`."""
    rots, centres = camera_path(n, arc_deg)
    return np.stack([render(scene, r, c, width, height) for r, c in zip(rots, centres)]), centres


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity ``(s, R, t)`` minimising ``sum |s R src_i + t - dst_i|^2`` for points ``[N, 3]`` (Umeyama 1991)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.ones(3)
    d[2] = np.sign(np.linalg.det(u @ vt)) or 1.0
    rot = u @ np.diag(d) @ vt
    scale = float((sig * d).sum() / (a ** 2).sum() * len(src))
    return scale, rot, mu_d - scale * rot @ mu_s


def write_clip(path: str | Path, n_poses: int, width: int, height: int, fps: float = 4.0, seed: int = 0,
               blur_sigma: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Write an H.264 mp4 of :func:`render_path`: each pose twice, first blurred (``blur_sigma`` pixels) then
    sharp, so sampling at ``fps / 2`` must pick the second of each pair. Returns the source indices of the
    sharp frames ``[n_poses]`` and the true camera centres ``[n_poses, 3]``."""
    frames, centres = render_path(make_scene(seed), n_poses, width, height)
    with atomic_path(path) as tmp, Mp4Writer(tmp, (width, height), fps) as writer:
        for frame in frames:
            writer.write(cv2.GaussianBlur(frame, (0, 0), blur_sigma))
            writer.write(frame)
    return 2 * np.arange(n_poses) + 1, centres
