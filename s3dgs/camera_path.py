"""A smooth camera path through a run's training cameras, and its video: positions on a cubic spline, rotations
slerped, one knot per camera in name order (``path.mp4`` of ``python -m s3dgs.eval``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy.interpolate import CubicSpline
from scipy.spatial.transform import Rotation, Slerp
from tqdm import tqdm

from preprocess.atomic_io import atomic_path
from preprocess.video_depth.vis import Mp4Writer
from s3dgs.data.scene import View
from s3dgs.metrics import RenderFn


def camera_path(camtoworlds: np.ndarray, frames: int) -> np.ndarray:
    """``frames`` camera-to-world matrices ``[frames, 4, 4]`` on a smooth path through ``camtoworlds
    [N, 4, 4]`` in their order, first to last: positions on a cubic spline, rotations slerped, one knot per camera."""
    if len(camtoworlds) == 1:
        return np.repeat(camtoworlds, frames, axis=0)
    knots = np.arange(len(camtoworlds))
    t = np.linspace(0, knots[-1], frames)
    out = np.tile(np.eye(4), (frames, 1, 1))
    out[:, :3, :3] = Slerp(knots, Rotation.from_matrix(camtoworlds[:, :3, :3]))(t).as_matrix()
    out[:, :3, 3] = CubicSpline(knots, camtoworlds[:, :3, 3])(t)
    return out


def path_views(views: list[View], frames: int) -> list[View]:
    """:func:`camera_path` through ``views`` sorted by name, as views with the first one's intrinsics and size."""
    ordered = sorted(views, key=lambda v: v.name)
    poses = camera_path(np.stack([v.camtoworld.double().numpy() for v in ordered]), frames)
    return [replace(ordered[0], name=f"path_{i:04d}", camtoworld=torch.from_numpy(m).float())
            for i, m in enumerate(poses)]


@torch.no_grad()
def write_path_video(render: RenderFn, train: list[View], path: Path, frames: int = 120, fps: float = 30) -> None:
    """``render`` :func:`path_views` through the training views ``train`` into an mp4 at ``path`` (H.264, else
    mp4v; an odd width or height is padded by one pixel)."""
    views = path_views(train, frames)
    with atomic_path(path) as tmp, Mp4Writer(tmp, (views[0].width, views[0].height), fps) as writer:
        for v in tqdm(views, desc=path.name, mininterval=1.0, dynamic_ncols=True):
            rgb = render(v)[0][0].clamp(0, 1)
            writer.write(rgb.mul(255).round().byte().cpu().numpy())
