"""Depth gain of the trainer: the built-in example scene with few training views, lambda_depth=0 vs 0.1.

Runs ``python -m s3dgs.train`` once per lambda and seed (same seed, steps and views for each lambda;
``lambda_depth=0`` also without the prior-based initialisation, so that run uses the prior nowhere) and
prints test PSNR, SSIM and depth AbsRel / delta1 side by side, the mean over seeds, the relative
AbsRel change and PSNR cost of each lambda against the first, the bar to beat: the test views' priors on
their own after the best affine fit to the truth (``prior_abs_rel``), and the AbsRel near and away from depth
edges (``depth_edges.py``)::

    python benchmarks/depth_gain.py --views 6 --steps 1000 --seeds 0 1 2
    python benchmarks/depth_gain.py --lambdas 0.1 -- data_dir=/tmp/fv_seq depth_loss.alignment=per_sequence
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from depth_edges import edge_split  # noqa: E402  (this folder is on sys.path)
from s3dgs import example  # noqa: E402


def run(lam: float, seed: int, args: argparse.Namespace, out: Path) -> dict:
    run_dir = out / f"lambda_{lam:g}_seed_{seed}"
    no_prior = ["init.from_priors=false"] if lam == 0 else []  # the baseline uses the prior nowhere
    cmd = [sys.executable, "-m", "s3dgs.train", f"lambda_depth={lam}", f"steps={args.steps}", f"seed={seed}",
           *no_prior, f"data.num_train_views={args.views}", f"depth_loss={args.loss}", f"hydra.run.dir={run_dir}",
           "save_renders=false", *args.overrides]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["wall_seconds"] = time.perf_counter() - t0
    return metrics


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--views", type=int, default=6, help="training views (few-view setting)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 0.1])
    ap.add_argument("--loss", default="anchored", help="depth_loss config (anchored, ssi, pearson, sparse)")
    ap.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temp folder)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="depth_gain_"))
    results = {(lam, seed): run(lam, seed, args, out) for seed in args.seeds for lam in args.lambdas}
    keys = ("psnr", "ssim", "depth_abs_rel", "depth_delta1")
    mean = {lam: {k: sum(results[lam, s]["test"][k] for s in args.seeds) / len(args.seeds) for k in keys}
            for lam in args.lambdas}
    data = next((Path(o.split("=", 1)[1]) for o in args.overrides if o.startswith("data_dir=")), None)
    print(f"{data or 'built-in example'}, {args.views} training views, {args.steps} steps, depth_loss={args.loss}, "
          f"runs in {out}")
    print("| lambda_depth | seed | test PSNR | test SSIM | depth AbsRel | depth delta1 | Gaussians | train s |")
    print("|---|---|---|---|---|---|---|---|")
    for (lam, seed), m in results.items():
        t = m["test"]
        print(f"| {lam:g} | {seed} | {t['psnr']:.2f} | {t['ssim']:.4f} | {t['depth_abs_rel']:.4f} | "
              f"{t['depth_delta1']:.4f} | {m['num_gaussians']} | {m['train_seconds']:.0f} |")
    for lam, t in mean.items():
        print(f"| {lam:g} | mean | {t['psnr']:.2f} | {t['ssim']:.4f} | {t['depth_abs_rel']:.4f} | "
              f"{t['depth_delta1']:.4f} | | |")
    base = mean[args.lambdas[0]]
    for lam in args.lambdas[1:]:
        t = mean[lam]
        print(f"lambda_depth={lam:g} vs {args.lambdas[0]:g} (mean of {len(args.seeds)} seeds): AbsRel "
              f"{100 * (t['depth_abs_rel'] / base['depth_abs_rel'] - 1):+.1f}%, PSNR {t['psnr'] - base['psnr']:+.2f} dB")
    oracle = [m["test"]["prior_abs_rel"] for m in results.values() if "prior_abs_rel" in m.get("test", {})]
    if oracle:
        print(f"the test views' priors alone, best affine fit to the truth: AbsRel {oracle[0]:.4f}")
    data = data or example.ensure_example()
    regions = {lam: [row for seed in args.seeds
                     for row in edge_split(out / f"lambda_{lam:g}_seed_{seed}", data, args.views).values()]
               for lam in args.lambdas}  # per test view with gt_depth: all, near edges, away, share
    if all(regions.values()):
        print("test depth AbsRel by region, mean over seeds and test views (benchmarks/depth_edges.py):")
        print("| lambda_depth | all pixels | near depth edges | away from edges |")
        print("|---|---|---|---|")
        for lam, rows in regions.items():
            print(f"| {lam:g} | " + " | ".join(f"{sum(r[i] for r in rows) / len(rows):.4f}" for i in range(3)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
