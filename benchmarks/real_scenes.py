"""Quality and speed of the trainer on real captures: test PSNR / SSIM (and depth AbsRel where the dataset has
ground-truth depth), Gaussian count, share of needle-shaped Gaussians and seconds per step.

Each dataset is ``FOLDER`` or ``FOLDER:DOWNSCALE``; every dataset is trained once per step count with the same
extra Hydra overrides (``python -m s3dgs.train`` in a subprocess, its defaults otherwise), and one table is
printed. Fetch the public captures as docs/performance.md says, then for example::

    python benchmarks/real_scenes.py data_local/fern:1 data_local/lego_200 data_local/fox:8 data_local/beer:4 \\
        --steps 400 1000 2000
    python benchmarks/real_scenes.py data_local/fern --steps 1000 --overrides strategy=default lambda_depth=0
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from s3dgs.gaussians import load_ply

NEEDLE_RATIO = 10.0  # a Gaussian whose longest axis is this many times its second longest is a needle


def needle_share(ply: Path) -> float:
    """Share of visible Gaussians (opacity > 0.1) in ``ply`` that are needles (see ``NEEDLE_RATIO``)."""
    g = load_ply(ply)
    scales = np.sort(np.stack([g["scale_0"], g["scale_1"], g["scale_2"]], 1), 1)  # log scales, ascending
    visible = 1 / (1 + np.exp(-g["opacity"])) > 0.1
    return float(np.mean(scales[visible, 2] - scales[visible, 1] > np.log(NEEDLE_RATIO))) if visible.any() else 0.0


def parse_dataset(arg: str) -> tuple[Path, int]:
    """``FOLDER[:DOWNSCALE]`` -> (folder, downscale)."""
    folder, _, factor = arg.rpartition(":") if ":" in arg else (arg, "", "1")
    if not factor.isdigit() or int(factor) < 1:
        raise argparse.ArgumentTypeError(f"{arg}: use FOLDER or FOLDER:DOWNSCALE with an integer DOWNSCALE >= 1")
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: not a folder; fetch the captures as docs/performance.md says")
    return path, int(factor)


def train(data: Path, downscale: int, steps: int, overrides: list[str], run_dir: Path) -> dict:
    """Run the trainer once; its metrics.json plus the wall time."""
    cmd = [sys.executable, "-m", "s3dgs.train", f"data_dir={data}", f"data.downscale={downscale}", f"steps={steps}",
           f"hydra.run.dir={run_dir}", "save_renders=false", *overrides]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["wall_seconds"] = time.perf_counter() - t0
    metrics["needles"] = needle_share(run_dir / "point_cloud.ply")
    return metrics


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("datasets", nargs="+", type=parse_dataset, help="FOLDER or FOLDER:DOWNSCALE")
    ap.add_argument("--steps", type=int, nargs="+", default=[400, 1000, 2000])
    ap.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temp folder)")
    ap.add_argument("--overrides", nargs="*", default=[], help="Hydra overrides for every run, e.g. strategy=default")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="real_scenes_"))
    print(f"runs in {out}; overrides: {' '.join(args.overrides) or '(none)'}")
    print("| capture | downscale | train/test views | steps | test PSNR | test SSIM | depth AbsRel | Gaussians | needles | "
          "s/step |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for data, downscale in args.datasets:
        for steps in args.steps:
            m = train(data, downscale, steps, args.overrides, out / f"{data.name}_{downscale}_{steps}")
            t = m["test"]
            print(f"| {data.name} | {downscale} | {m['num_train_views']}/{t['num_views']} | "
                  f"{steps} | {t['psnr']:.2f} | {t['ssim']:.3f} | {t.get('depth_abs_rel', float('nan')):.4f} | "
                  f"{m['num_gaussians']} | {100 * m['needles']:.1f}% | "
                  f"{m['train_seconds'] / steps:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
