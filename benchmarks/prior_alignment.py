"""How close each training view's prior comes to the true depth once aligned to the sparse points: one scale
(RANSAC line, ``depth_loss.scale_nodes=1``) against the smooth scale field (the default), beside the best
single affine fitted to the truth itself (the oracle a per-image scale cannot beat).

Needs a dataset with ``gt_depth/`` (the built-in example, or scenes from ``python -m s3dgs.example``)::

    python benchmarks/prior_alignment.py [DATA_DIR] [--views 6] [--nodes 6] [--points-per-node 15]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s3dgs import alignment, example  # noqa: E402
from preprocess.depth_png import DepthFileError  # noqa: E402
from s3dgs.data.frames import DataError  # noqa: E402
from s3dgs.data.scene import load_scene  # noqa: E402
from s3dgs.metrics import depth_metrics, prior_fitted_to  # noqa: E402


def aligned_depth(view, fit) -> torch.Tensor:
    """z-depth ``[H, W]`` of an inverse-depth prior mapped by ``fit``; 0 where invalid."""
    scale, offset = alignment.alignment_maps(fit, view.height, view.width)
    disp = scale * view.prior + offset
    return torch.where(view.prior_valid & (disp > 0), 1.0 / disp.clamp_min(1e-12), torch.zeros_like(disp))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", nargs="?", type=Path, default=None, help="default: the built-in example")
    ap.add_argument("--views", type=int, default=6, help="training views (as data.num_train_views)")
    ap.add_argument("--nodes", type=int, default=6, help="depth_loss.scale_nodes of the field")
    ap.add_argument("--points-per-node", type=int, default=15, help="depth_loss.points_per_node of the field")
    args = ap.parse_args()
    data = args.data_dir or example.ensure_example()
    try:
        scene = load_scene(data, depth_dir=data / "depth", num_train_views=args.views)
    except (DataError, DepthFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if scene.prior_kind != "inverse_depth":
        why = "holds metric priors" if scene.prior_kind else "holds no priors for these images"
        print(f"error: {data}/depth {why}; this benchmark compares alignments of relative inverse-depth priors "
              "(python -m s3dgs.example writes a scene with them)", file=sys.stderr)
        return 1
    line = alignment.anchored_alignments(scene.train, scene.points, scene.prior_kind)[0]
    field = alignment.anchored_alignments(scene.train, scene.points, scene.prior_kind, max_nodes=args.nodes,
                                          points_per_node=args.points_per_node)[0]
    rows = []
    print(f"{data}: {len(scene.train)} training views, depth AbsRel of the aligned prior against the truth")
    print("| view | one scale (points) | scale field (points) | one scale fitted to the truth |")
    print("|---|---|---|---|")
    for v in scene.train:
        if v.key not in line or v.gt_depth is None:
            continue
        row = [depth_metrics(aligned_depth(v, line[v.key]), v.gt_depth)["abs_rel"],
               depth_metrics(aligned_depth(v, field[v.key]), v.gt_depth)["abs_rel"],
               depth_metrics(prior_fitted_to(v.prior, v.prior_valid, scene.prior_kind, v.gt_depth),
                             v.gt_depth)["abs_rel"]]
        rows.append(row)
        print(f"| {v.key} | " + " | ".join(f"{x:.4f}" for x in row) + " |")
    if not rows:
        print("error: no training view has both a fit to the sparse points and gt_depth", file=sys.stderr)
        return 1
    mean = [sum(r[i] for r in rows) / len(rows) for i in range(3)]
    print("| **mean** | " + " | ".join(f"**{x:.4f}**" for x in mean) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
