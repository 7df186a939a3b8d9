"""Initial Gaussians: from a dataset's sparse points, or random in a box when it has none.

Conventions follow the references: scale = root-mean-square distance to the 3 nearest neighbours
(gsplat ``simple_trainer``, 3DGS ``distCUDA2``), random rotations, one initial opacity; random points
uniform in a cube of half-size ``extent x scene scale`` around the cameras' centroid (gsplat's
``init_type=random``), or inside the cameras' look-at bounds for object captures.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from scipy.spatial import cKDTree

from s3dgs.gaussians import rgb_to_sh

log = logging.getLogger(__name__)


def knn_rms_distance(points: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Root-mean-square distance of each point ``[N, 3]`` to its ``k`` nearest other points, ``[N]``
    (scipy's KD-tree: O(N log N), no N x N matrix). Duplicate points give 0."""
    x = points.detach().cpu().double().numpy()
    k = min(k, len(x) - 1)
    dist, _ = cKDTree(x).query(x, k=k + 1, workers=-1)  # column 0 is the point itself
    return torch.from_numpy(np.sqrt((dist[:, 1:] ** 2).mean(1))).to(points)


def random_points(centre: torch.Tensor, half_size: float, n: int, generator: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points uniform in the cube ``centre +- half_size`` ``[n, 3]`` with random colours ``[n, 3]``."""
    pts = centre + (torch.rand(n, 3, generator=generator) * 2 - 1) * half_size
    return pts, torch.rand(n, 3, generator=generator)


def init_gaussians(points: torch.Tensor, rgb: torch.Tensor, sh_degree: int, init_opacity: float,
                   init_scale: float, generator: torch.Generator) -> torch.nn.ParameterDict:
    """Gaussians at ``points [N, 3]`` with colours ``rgb [N, 3]`` in [0, 1]: isotropic scales of
    ``init_scale x`` the RMS distance to the 3 nearest neighbours, random rotations, opacity ``init_opacity``."""
    n = len(points)
    dist = knn_rms_distance(points).clamp_min(1e-7) if n > 1 else torch.ones(n)
    return torch.nn.ParameterDict({
        "means": torch.nn.Parameter(points.clone()),
        "scales": torch.nn.Parameter(torch.log(dist * init_scale)[:, None].repeat(1, 3)),
        "quats": torch.nn.Parameter(torch.rand(n, 4, generator=generator)),
        "opacities": torch.nn.Parameter(torch.logit(torch.full((n,), init_opacity))),
        "sh0": torch.nn.Parameter(rgb_to_sh(rgb)[:, None, :]),
        "shN": torch.nn.Parameter(torch.zeros(n, (sh_degree + 1) ** 2 - 1, 3)),
    })


def random_init_box(camtoworlds: torch.Tensor, Ks: torch.Tensor, sizes: torch.Tensor, extent: float
                    ) -> tuple[torch.Tensor, float]:
    """Centre ``[3]`` and half-size of the cube that random initial points fill, from the cameras
    (``camtoworlds [V, 4, 4]`` OpenCV axes, ``Ks [V, 3, 3]``, ``sizes [V, 2]`` as width, height).

    Cameras looking inward (object captures, turntables, rooms filmed around a subject): the point nearest
    to every optical axis (least squares), and half the width each camera sees at that distance (median
    over cameras): the reference 3DGS's +-1.3 box on NeRF-synthetic comes out as +-1.4. Cameras whose axes do
    not meet (forward-facing, one camera): the cameras' centroid and ``extent`` (the scene scale), as gsplat."""
    origins, dirs = camtoworlds[:, :3, 3].double(), camtoworlds[:, :3, 2].double()
    proj = torch.eye(3, dtype=torch.float64) - dirs[:, :, None] * dirs[:, None, :]  # [V, 3, 3]
    A, b = proj.sum(0), (proj @ origins[:, :, None]).sum(0)[:, 0]
    eig = torch.linalg.eigvalsh(A)
    if eig[0] > 0.05 * eig[-1]:  # axes meet: well conditioned
        centre = torch.linalg.solve(A, b)
        ahead = ((centre - origins) * dirs).sum(-1)
        if bool((ahead > 0).float().mean() > 0.9):
            half_fov = torch.atan(0.5 * sizes.double().amax(-1) / Ks[:, 0, 0].double())
            half = float((ahead * torch.tan(half_fov)).median())
            return centre.float(), half
    return camtoworlds[:, :3, 3].mean(0), extent
