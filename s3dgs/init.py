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
from omegaconf import DictConfig
from scipy.spatial import cKDTree

from s3dgs import alignment
from s3dgs.data.scene import Scene, View
from s3dgs.errors import TrainError
from s3dgs.gaussians import rgb_to_sh

log = logging.getLogger(__name__)


def knn_rms_distance(points: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Root-mean-square distance of each point ``[N, 3]`` to its ``k`` nearest other points, ``[N]``
    (scipy's KD-tree: O(N log N), no N x N matrix). Duplicate points give 0."""
    x = points.detach().cpu().double().numpy()
    k = min(k, len(x) - 1)
    dist, _ = cKDTree(x).query(x, k=k + 1, workers=-1)  # column 0 is the point itself
    return torch.from_numpy(np.sqrt((dist[:, 1:] ** 2).mean(1))).to(points)


def voxel_ids(points: np.ndarray, size: float) -> np.ndarray:
    """Index ``[N]`` (0..V-1) of the occupied voxel of edge ``size`` (a grid from the points' minimum corner) that
    each of ``points [N, 3]`` lies in."""
    cell = np.floor((points - points.min(0)) / size).astype(np.int64)
    dims = cell.max(0) + 1
    return np.unique(cell[:, 0] + dims[0] * (cell[:, 1] + dims[1] * cell[:, 2]), return_inverse=True)[1]


def coverage_subsample(points: torch.Tensor, n: int, generator: torch.Generator, iters: int = 12) -> torch.Tensor:
    """Sorted indices of ``n`` of ``points [N, 3]`` (all when ``N <= n``) that keep their coverage: one per voxel of
    the finest grid (edge found by bisection) in which they occupy at most ``n`` voxels, the point nearest its
    voxel's centroid; the rest of the budget drawn at random from the others (denser regions stay denser)."""
    if len(points) <= n:
        return torch.arange(len(points))
    x = points.detach().cpu().double().numpy()
    diag = float(np.linalg.norm(x.max(0) - x.min(0)))
    hi = 2 * diag + 1e-12  # one voxel
    lo = hi * 1e-6  # at most 5e5 voxels along an axis: the voxel ids fit in int64
    for _ in range(iters):
        mid = (lo * hi) ** 0.5
        lo, hi = (lo, mid) if voxel_ids(x, mid).max() < n else (mid, hi)
    ids = voxel_ids(x, hi)
    centroids = np.stack([np.bincount(ids, x[:, i]) for i in range(3)], 1) / np.bincount(ids)[:, None]
    order = np.lexsort((((x - centroids[ids]) ** 2).sum(1), ids))
    first = order[np.r_[True, ids[order][1:] != ids[order][:-1]]]
    rest = np.setdiff1d(np.arange(len(x)), first)
    fill = rest[torch.randperm(len(rest), generator=generator)[:n - len(first)].numpy()]
    return torch.from_numpy(np.sort(np.concatenate([first, fill])))


def random_points(centre: torch.Tensor, half_size: float, n: int, generator: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points uniform in the cube ``centre +- half_size`` ``[n, 3]`` with random colours ``[n, 3]``."""
    pts = centre + (torch.rand(n, 3, generator=generator) * 2 - 1) * half_size
    return pts, torch.rand(n, 3, generator=generator)


def init_gaussians(points: torch.Tensor, rgb: torch.Tensor, sh_degree: int, init_opacity: float,
                   init_scale: float | torch.Tensor, generator: torch.Generator) -> torch.nn.ParameterDict:
    """Gaussians at ``points [N, 3]`` with colours ``rgb [N, 3]`` in [0, 1]: isotropic scales of
    ``init_scale`` (a number or ``[N]``) x the RMS distance to the 3 nearest neighbours, random rotations,
    opacity ``init_opacity``."""
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


def local_range(depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest and largest value ``[H, W]`` in each pixel's 3x3 neighbourhood of ``depth [H, W]``."""
    d = depth[None, None]
    return (-torch.nn.functional.max_pool2d(-d, 3, stride=1, padding=1)[0, 0],
            torch.nn.functional.max_pool2d(d, 3, stride=1, padding=1)[0, 0])


def snap_to_surfaces(depth: torch.Tensor, threshold: float) -> torch.Tensor:
    """z-depth ``depth [H, W]`` (``NaN``: no value) with the pixels between two surfaces moved onto the nearer one.

    A pixel whose 3x3 neighbourhood spans a relative depth jump above ``threshold`` (an occlusion boundary) and
    whose depth is more than ``threshold / 2`` (relative) from both the neighbourhood's smallest and largest
    depth lies between the surfaces, where a prior blurred across the edge puts it ("flying pixels"). It takes
    the depth of its neighbour that lies on a surface and is closest to it in depth; ``NaN`` where no neighbour
    does (inside a ramp wider than a pixel on each side). Other pixels keep their depth."""
    lo, hi = local_range(torch.where(depth.isnan(), depth.nan_to_num().max(), depth))
    edge = (hi - lo) / lo.clamp_min(1e-12) > threshold
    between = edge & (depth - lo > 0.5 * threshold * lo) & (hi - depth > 0.5 * threshold * depth)
    h, w = depth.shape
    surface = torch.nn.functional.pad(torch.where(between, torch.nan, depth), [1, 1, 1, 1], value=torch.nan)
    best, gap = torch.full_like(depth, torch.nan), torch.full_like(depth, torch.inf)
    for dy in range(3):
        for dx in range(3):
            neighbour = surface[dy:dy + h, dx:dx + w]
            dist = (neighbour - depth).abs()
            closer = dist < gap  # False where the neighbour is NaN
            best, gap = torch.where(closer, neighbour, best), torch.where(closer, dist, gap)
    return torch.where(between, best, depth)


def backproject(depth: torch.Tensor, valid: torch.Tensor, image: torch.Tensor, K: torch.Tensor,
                camtoworld: torch.Tensor, n: int, generator: torch.Generator, edge_threshold: float = 0.05
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``n`` coloured world points ``[m, 3]``, ``[m, 3]`` from z-depth ``depth [H, W]`` (scene units) at
    random pixels where ``valid [H, W]`` holds; pixels between two surfaces at a depth discontinuity (relative
    jump above ``edge_threshold``) are moved onto the nearer one or left out (:func:`snap_to_surfaces`), so no
    point lands between two objects.
    ``image [H, W, 3]`` in [0, 1]; ``K [3, 3]`` with pixel centres at +0.5; ``camtoworld [4, 4]`` OpenCV axes."""
    depth = snap_to_surfaces(torch.where(valid, depth, torch.nan), edge_threshold)
    ok = valid & (depth > 0)
    idx = ok.flatten().nonzero()[:, 0]
    idx = idx[torch.randperm(len(idx), generator=generator)[:n]]
    v, u = idx // depth.shape[1], idx % depth.shape[1]
    z = depth.flatten()[idx]
    cam = torch.stack([(u + 0.5 - K[0, 2]) / K[0, 0] * z, (v + 0.5 - K[1, 2]) / K[1, 1] * z, z], -1)
    return cam @ camtoworld[:3, :3].T + camtoworld[:3, 3], image.reshape(-1, 3)[idx]


def prior_points(scene: Scene, fits: dict[str, alignment.Alignment], per_view: int, generator: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Coloured points ``[m, 3]``, ``[m, 3]`` back-projected from each training view's prior mapped by its
    ``fits[key] = (scale, offset)`` onto the sparse points' inverse depth (relative priors) or depth (metric
    priors), only at depths the view's sparse points span (:func:`s3dgs.alignment.supported_depths`: a fit to
    points on one object says little about a background far behind it; no limit for a view that sees too few
    points to tell, e.g. one aligned per sequence); views without a fit add none."""
    pts, rgb = [torch.zeros(0, 3)], [torch.zeros(0, 3)]
    for v in scene.train:
        if v.key not in fits:
            continue
        scale, offset = alignment.alignment_maps(fits[v.key], v.height, v.width)
        q = scale * v.prior + offset
        depth = 1.0 / q.clamp_min(1e-12) if scene.prior_kind == "inverse_depth" else q
        ok = v.prior_valid & (q > 0) & (True if v.mask is None else v.mask)
        supported = alignment.supported_depths(v, scene.points)
        if supported is not None:
            ok &= (depth >= supported[0]) & (depth <= supported[1])
        p, c = backproject(depth, ok, v.image, v.K, v.camtoworld, per_view, generator)
        pts.append(p)
        rgb.append(c)
    return torch.cat(pts), torch.cat(rgb)


def inside_silhouettes(points: torch.Tensor, views: list[View]) -> torch.Tensor:
    """``[N]`` bool: points ``[N, 3]`` that land on an opaque pixel (alpha > 0.5) of every view with an alpha
    channel that sees them (the visual hull of the objects in RGBA captures)."""
    keep = torch.ones(len(points), dtype=torch.bool)
    for v in views:
        if v.alpha is None:
            continue
        uv, _, seen = alignment.pixel_coords(v, points)
        px = uv[seen].floor().long()
        keep[seen] &= v.alpha[px[:, 1], px[:, 0]] > 0.5
    return keep


def carved_random_points(centre: torch.Tensor, half_size: float, n: int, views: list[View],
                         generator: torch.Generator, rounds: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`random_points`, keeping only those :func:`inside_silhouettes` of ``views`` (drawn in batches of
    ``8 n`` until ``n`` are kept or ``rounds`` batches were drawn); all of them when no view has alpha."""
    if all(v.alpha is None for v in views):
        return random_points(centre, half_size, n, generator)
    pts, rgb = [], []
    for _ in range(rounds):
        p, c = random_points(centre, half_size, 8 * n, generator)
        keep = inside_silhouettes(p, views)
        pts.append(p[keep])
        rgb.append(c[keep])
        if sum(len(x) for x in pts) >= n:
            break
    return torch.cat(pts)[:n], torch.cat(rgb)[:n]


def uses_prior_points(cfg: DictConfig, prior_kind: str | None) -> bool:
    """Whether the initialisation (``init`` config group) back-projects priors: ``from_priors`` true, or auto with
    priors of ``prior_kind``."""
    return cfg.from_priors is True or (cfg.from_priors == "auto" and prior_kind is not None)


def initial_points(scene: Scene, cfg: DictConfig, extent: float, generator: torch.Generator,
                   prior_fits: dict[str, alignment.Alignment], max_points: int = 0
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where the Gaussians start (``init`` config group): the sparse points, else random points in
    :func:`random_init_box` (inside the silhouettes of RGBA images); with ``from_priors`` (``auto``: when there
    are depth priors) also ``prior_points`` per training view whose prior is trusted, aligned by its
    ``prior_fits[key]`` (the trainer's fits of the views whose priors agree with the sparse points; fewer points
    per view when that would take the total over ``max_points``, 0 = no limit). More sparse (or random) points
    than ``max_points`` are downsampled to it by :func:`coverage_subsample`. Returns points ``[N, 3]``, colours
    ``[N, 3]`` and each point's scale factor ``[N]``: ``init.scale`` for measured points, ``init.random_scale``
    for random ones (their spacing says nothing about the surface: smaller Gaussians fit detail sooner)."""
    if len(scene.points):
        pts, rgb = scene.points, scene.points_rgb
        factor = torch.full((len(pts),), float(cfg.scale))
    else:
        views = scene.train
        centre, half = random_init_box(torch.stack([v.camtoworld for v in views]), torch.stack([v.K for v in views]),
                                       torch.tensor([[v.width, v.height] for v in views]), extent)
        pts, rgb = carved_random_points(centre, cfg.random_extent * half, cfg.num_random, views, generator)
        log.info("no sparse points: %d random Gaussians in a cube of half-size %.3g around %s%s", len(pts),
                 cfg.random_extent * half, [round(float(c), 3) for c in centre],
                 "" if all(v.alpha is None for v in views) else ", inside the images' opaque silhouettes")
        factor = torch.full((len(pts),), float(cfg.random_scale))
    if max_points and len(pts) > max_points:
        keep = coverage_subsample(pts, max_points, generator)
        log.info("init: %d of %d starting points dropped to stay within the %d Gaussians the device allows "
                 "(strategy.cap_max); one kept per occupied voxel, so the scene stays covered", len(pts) - len(keep),
                 len(pts), max_points)
        pts, rgb, factor = pts[keep], rgb[keep], factor[keep]
    if cfg.from_priors not in ("auto", True, False):
        raise TrainError(f"init.from_priors={cfg.from_priors!r}: use auto, true or false")
    if cfg.from_priors is True and scene.prior_kind is None:
        raise TrainError("init.from_priors=true but there are no depth priors; set depth_dir=... or "
                         "init.from_priors=auto")
    fitted = sum(v.key in prior_fits for v in scene.train)  # views whose prior is trusted (the log said which)
    if fitted and uses_prior_points(cfg, scene.prior_kind):
        per_view = cfg.prior_points
        if max_points and len(pts) + per_view * fitted > max_points:
            per_view = max(0, max_points - len(pts)) // fitted
            log.info("init.from_priors: %d points per view instead of %d, to stay within the %d Gaussians the "
                     "device allows (strategy.cap_max)", per_view, cfg.prior_points, max_points)
        extra, extra_rgb = prior_points(scene, prior_fits, per_view, generator)
        log.info("init.from_priors: %d points from the priors of %d trusted views added to %d", len(extra), fitted,
                 len(pts))
        pts, rgb = torch.cat([pts, extra]), torch.cat([rgb, extra_rgb])
        factor = torch.cat([factor, torch.full((len(extra),), float(cfg.scale))])
    return pts, rgb, factor
