"""Depth gain of the trainer: the built-in example scene with few training views, lambda_depth=0 vs 0.1.

Runs ``python -m s3dgs.train`` once per lambda (same seed, steps and views) and prints test PSNR, SSIM
and depth AbsRel / delta1 side by side, plus the relative AbsRel change and the PSNR cost::

    python benchmarks/depth_gain.py --views 6 --steps 1000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(lam: float, args: argparse.Namespace, out: Path) -> dict:
    run_dir = out / f"lambda_{lam:g}"
    cmd = [sys.executable, "-m", "s3dgs.train", f"lambda_depth={lam}", f"steps={args.steps}", f"seed={args.seed}",
           f"data.num_train_views={args.views}", f"depth_loss={args.loss}", f"hydra.run.dir={run_dir}",
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
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 0.1])
    ap.add_argument("--loss", default="ssi", help="depth_loss config (ssi, pearson, sparse)")
    ap.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temp folder)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="depth_gain_"))
    results = {lam: run(lam, args, out) for lam in args.lambdas}
    base = results[args.lambdas[0]]["test"]
    print(f"example scene, {args.views} training views, {args.steps} steps, seed {args.seed}, depth_loss={args.loss}")
    print("| lambda_depth | test PSNR | test SSIM | depth AbsRel | depth delta1 | Gaussians | train s |")
    print("|---|---|---|---|---|---|---|")
    for lam, m in results.items():
        t = m["test"]
        print(f"| {lam:g} | {t['psnr']:.2f} | {t['ssim']:.4f} | {t['depth_abs_rel']:.4f} | {t['depth_delta1']:.4f} "
              f"| {m['num_gaussians']} | {m['train_seconds']:.0f} |")
    for lam in args.lambdas[1:]:
        t = results[lam]["test"]
        print(f"lambda_depth={lam:g} vs {args.lambdas[0]:g}: AbsRel {100 * (t['depth_abs_rel'] / base['depth_abs_rel'] - 1):+.1f}%, "
              f"PSNR {t['psnr'] - base['psnr']:+.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
