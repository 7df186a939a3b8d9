"""Where a trained run's depth error is: test-view depth AbsRel over all pixels, near depth edges and away from
them (pixels within ``--band`` px of a jump of more than 5% between neighbouring true depths count as near).

On small images a large share of the pixels lies at depth edges, where the rendered expected depth blends the
foreground and the background over a pixel or two while the true depth (pixel centre) jumps; this separates
that from the geometry of the surfaces. Needs a dataset with ``gt_depth/`` and a run's ``point_cloud.ply``::

    python benchmarks/depth_edges.py RUN_DIR [--data DATA_DIR] [--views 6]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s3dgs import example  # noqa: E402
from s3dgs.data.scene import View, load_scene  # noqa: E402
from s3dgs.gaussians import gaussians_from_ply, sh_degree_of  # noqa: E402
from s3dgs.metrics import depth_metrics  # noqa: E402
from s3dgs.render import rasterization  # noqa: E402


def near_edges(depth: torch.Tensor, band: int, jump: float = 0.05) -> torch.Tensor:
    """``[H, W]`` bool: pixels within ``band`` px of a neighbour pair whose z-depths ``[H, W]`` differ by more than
    ``jump`` (relative)."""
    log_z = np.log(depth.numpy().clip(1e-6))
    dx = np.abs(np.diff(log_z, axis=1, prepend=log_z[:, :1])) > jump
    dy = np.abs(np.diff(log_z, axis=0, prepend=log_z[:1])) > jump
    kernel = np.ones((2 * band + 1, 2 * band + 1), np.uint8)
    return torch.from_numpy(cv2.dilate((dx | dy).astype(np.uint8), kernel) > 0)


def rendered_depth(g: dict[str, torch.Tensor], view: View) -> torch.Tensor:
    """Expected z-depth ``[H, W]`` of the Gaussians ``g`` in ``view`` (as the evaluation renders it)."""
    out, _, _ = rasterization(g["means"], g["quats"], torch.exp(g["scales"]), torch.sigmoid(g["opacities"]),
                              torch.cat([g["sh0"], g["shN"]], 1), torch.linalg.inv(view.camtoworld)[None],
                              view.K[None], view.width, view.height, sh_degree=sh_degree_of(g["shN"]),
                              packed=False, render_mode="RGB+ED")
    return out[0, ..., 3]


def edge_split(run_dir: Path, data: Path, views: int, band: int = 2) -> dict[str, list[float]]:
    """Per test view with ``gt_depth``: depth AbsRel over all pixels, near depth edges, away from them, and the
    share of pixels near edges, of the run in ``run_dir`` trained on ``data`` with ``views`` training views."""
    scene = load_scene(data, num_train_views=views)
    g = gaussians_from_ply(run_dir / "point_cloud.ply")
    rows = {}
    for v in scene.test:
        if v.gt_depth is None:
            continue
        z, near = rendered_depth(g, v), near_edges(v.gt_depth, band)
        rows[v.key] = ([depth_metrics(z, v.gt_depth * m)["abs_rel"] for m in (torch.ones_like(near), near, ~near)]
                       + [float(near.float().mean())])
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--data", type=Path, default=None, help="the run's dataset (default: the built-in example)")
    ap.add_argument("--views", type=int, default=6, help="the run's data.num_train_views (fixes the test split)")
    ap.add_argument("--band", type=int, default=2, help="pixels on each side of an edge that count as near it")
    args = ap.parse_args()
    data = args.data or example.ensure_example()
    if not (args.run_dir / "point_cloud.ply").is_file():
        print(f"error: {args.run_dir / 'point_cloud.ply'} not found; pass a finished run folder of "
              "python -m s3dgs.train", file=sys.stderr)
        return 1
    try:
        rows = edge_split(args.run_dir, data, args.views, args.band)
    except ValueError as e:  # DataError (dataset), or a PLY that is not 3DGS
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not rows:
        print(f"error: no test view of {data} has gt_depth", file=sys.stderr)
        return 1
    print(f"{args.run_dir}: test-view depth AbsRel (one least-squares scale per view and region)")
    print("| view | all pixels | near depth edges | away from edges | share of pixels near edges |")
    print("|---|---|---|---|---|")
    for key, r in rows.items():
        print(f"| {key} | " + " | ".join(f"{c:.4f}" for c in r[:3]) + f" | {r[3]:.2f} |")
    mean = [sum(r[i] for r in rows.values()) / len(rows) for i in range(4)]
    print("| **mean** | " + " | ".join(f"**{c:.4f}**" for c in mean[:3]) + f" | {mean[3]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
