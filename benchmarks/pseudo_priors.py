"""Depth priors for a real capture, without a depth model: what a run trained on all its training views renders,
distorted the way the built-in example distorts exact depth into a monocular-like prior.

Measures the depth prior's gain on real images, real poses and real SfM points where no monocular depth
model can run (no weights offline). Writes ``OUT_DIR``: the dataset's files linked, ``gt_depth/<key>.npy``
(the dense run's expected depth at each image's full resolution and pixels, lens distortion included,
train and test views) and ``depth/``
(16-bit priors + depth_meta.json: relative inverse depth with a random smooth warp, a mild non-linearity,
blur, noise, scale and shift per image, :func:`s3dgs.example.make_prior`). Test views are held out of the
dense run, so their depth is that run's view of unseen images, not ground truth: compare runs with each
other, not with other papers' numbers. Then train few-view on it, e.g.::

    python -m s3dgs.train data_dir=data_local/fern data.downscale=2 hydra.run.dir=runs/fern_dense
    python benchmarks/pseudo_priors.py data_local/fern runs/fern_dense data_local/fern_pseudo
    python benchmarks/depth_gain.py --views 6 --seeds 0 1 2 -- data_dir=data_local/fern_pseudo data.downscale=2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from depth_edges import rendered_depth  # noqa: E402  (this folder is on sys.path)
from preprocess.atomic_io import atomic_path  # noqa: E402
from preprocess.depth_png import DepthMeta, quantize, write_depth_png  # noqa: E402
from s3dgs.data.scene import load_scene  # noqa: E402
from s3dgs.example import make_prior  # noqa: E402
from s3dgs.gaussians import gaussians_from_ply  # noqa: E402


def to_source_pixels(values: np.ndarray, remap: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """``values [H, W]`` on an undistorted view's pixels -> on its distorted source image's pixels (same size; the
    nearest undistorted sample, found by a KD-tree over ``remap``, the loader's undistorted -> source maps)."""
    if remap is None:
        return values
    h, w = values.shape
    tree = cKDTree(np.stack([remap[0].ravel(), remap[1].ravel()], 1))
    gy, gx = np.mgrid[0:h, 0:w]
    return values.ravel()[tree.query(np.stack([gx.ravel(), gy.ravel()], 1))[1]].reshape(h, w)


def write_pseudo_priors(data: Path, run_dir: Path, out: Path, seed: int = 0) -> int:
    """Write ``out`` (see the module doc) from the dataset ``data`` and the run in ``run_dir``; returns the number
    of views written."""
    scene = load_scene(data)
    g = gaussians_from_ply(run_dir / "point_cloud.ply")
    out.mkdir(parents=True, exist_ok=True)
    for item in data.iterdir():  # the dataset itself, linked
        link = out / item.name
        if item.name not in ("gt_depth", "depth") and not link.exists():
            link.symlink_to(item.resolve())
    (out / "gt_depth").mkdir(exist_ok=True)
    (out / "depth").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    meta = DepthMeta(backend="benchmarks/pseudo_priors.py", model=f"rendered depth of {run_dir}, distorted",
                     extra={"note": "relative inverse depth: a dense run's expected depth with a per-image smooth "
                                    "warp, non-linearity, blur, noise, scale and shift (s3dgs.example.make_prior)"})
    views = scene.train + scene.test
    for v in views:
        with torch.no_grad():
            depth = to_source_pixels(rendered_depth(g, v).numpy(), v.remap)  # the loader undistorts again
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan)
        fill = np.nanmax(depth)  # uncovered pixels (rare): as far as the farthest surface
        with atomic_path(out / "gt_depth" / f"{v.key}.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, np.nan_to_num(depth, nan=0.0).astype(np.float32))
        png, lo, hi = quantize(make_prior(np.nan_to_num(depth, nan=fill), rng))
        write_depth_png(out / "depth" / f"{v.key}.png", png)
        meta.images[v.key] = {"min": lo, "max": hi, "width": v.width, "height": v.height, "source": v.name}
    meta.save(out / "depth")
    return len(views)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="the capture (any layout python -m s3dgs.train reads)")
    ap.add_argument("run_dir", type=Path, help="a finished run on it at full resolution or a downscale, all views")
    ap.add_argument("out_dir", type=Path, help="folder to write (the capture linked, gt_depth/, depth/)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the distortions")
    args = ap.parse_args()
    if not (args.run_dir / "point_cloud.ply").is_file():
        print(f"error: {args.run_dir / 'point_cloud.ply'} not found; pass a finished run folder of "
              "python -m s3dgs.train", file=sys.stderr)
        return 1
    try:
        n = write_pseudo_priors(args.data, args.run_dir, args.out_dir, args.seed)
    except ValueError as e:  # DataError (dataset), or a PLY that is not 3DGS
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.out_dir}: gt_depth and depth priors for {n} views")
    return 0


if __name__ == "__main__":
    sys.exit(main())
