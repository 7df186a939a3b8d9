"""Do no harm: the trainer's defaults with bad depth priors against ``lambda_depth=0`` on one capture.

Writes bad prior folders for the dataset (s3dgs format: 16-bit PNG + depth_meta.json, one per image key) and
trains ``python -m s3dgs.train`` with each, plus once with ``lambda_depth=0`` and no priors, same seed and
steps; prints test PSNR / SSIM, the difference to ``lambda_depth=0`` and what the run made of the priors
(mean weight, the one-line verdict). The bad priors:

- ``constant``: one value everywhere;
- ``noise``: uniform noise per pixel;
- ``other_scene``: ``--other-scene DIR``'s priors (another capture), resized to each image, in order;
- ``shuffled``: ``--real DIR``'s priors (this capture's, e.g. a real network's) given to the wrong views
  (each view gets the prior of the view half the sequence away);
- ``real``: ``--real DIR`` itself, for reference.

Target (issue 23): every bad kind within 0.1 dB of ``lambda_depth=0``. For example::

    python benchmarks/prior_harm.py data_local/fox:8 --real data_local/fox/depth_pydnet \\
        --other-scene data_local/beer/depth_pydnet --out /tmp/harm_fox --overrides strategy.cap_max=10000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from preprocess.depth_png import DepthMeta, prior_keys, quantize, read_depth_png, write_depth_png
from s3dgs.data.frames import read_layout

KINDS = ("constant", "noise", "other_scene", "shuffled", "real")


def write_priors(folder: Path, maps: dict[str, np.ndarray], model: str) -> None:
    """``maps`` (key -> float [H, W], relative inverse depth) as an s3dgs prior folder."""
    meta = DepthMeta(backend="benchmark", model=model, kind="inverse_depth")
    for key, x in maps.items():
        png, lo, hi = quantize(x)
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        write_depth_png(folder / f"{key}.png", png)
        meta.images[key] = {"min": lo, "max": hi, "width": x.shape[1], "height": x.shape[0], "source": "benchmark"}
    meta.save(folder)


def read_priors(folder: Path) -> dict[str, np.ndarray]:
    """An s3dgs prior folder -> key -> float map (decoded through depth_meta.json)."""
    meta = DepthMeta.load(folder)
    if meta is None:
        raise SystemExit(f"error: {folder}: no depth_meta.json; make priors with preprocess.generate_depth or "
                         "preprocess.import_depth")
    return {key: meta.to_float(key, read_depth_png(folder / f"{key}.png")) for key in sorted(meta.images)}


def bad_priors(kind: str, sizes: dict[str, tuple[int, int]], real: dict[str, np.ndarray] | None,
               other: dict[str, np.ndarray] | None, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The ``kind`` of bad prior for each key of ``sizes`` (key -> (width, height))."""
    keys = sorted(sizes)
    if kind == "constant":
        return {k: np.full((h, w), 0.5) for k, (w, h) in sizes.items()}
    if kind == "noise":
        return {k: rng.uniform(0.1, 1.0, (h, w)) for k, (w, h) in sizes.items()}
    if kind == "other_scene":
        src = list(other.values())
        return {k: cv2.resize(src[i % len(src)], sizes[k], interpolation=cv2.INTER_AREA) for i, k in enumerate(keys)}
    have = [k for k in keys if k in real]
    if kind == "shuffled":
        half = len(have) // 2
        return {k: cv2.resize(real[have[(i + half) % len(have)]], sizes[k], interpolation=cv2.INTER_AREA)
                for i, k in enumerate(have)}
    return {k: real[k] for k in have}


def train(data: Path, downscale: int, depth_dir: Path | None, lam: float, args: argparse.Namespace,
          run_dir: Path) -> dict:
    depth = [f"depth_dir={depth_dir}"] if depth_dir else ["init.from_priors=false"]
    cmd = [sys.executable, "-m", "s3dgs.train", f"data_dir={data}", f"data.downscale={downscale}",
           f"steps={args.steps}", f"seed={args.seed}", f"lambda_depth={lam}", *depth, f"hydra.run.dir={run_dir}",
           "save_renders=false", "log.tensorboard=false", *args.overrides]
    if not (run_dir / "metrics.json").exists():
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"error: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return json.loads((run_dir / "metrics.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", help="FOLDER or FOLDER:DOWNSCALE")
    ap.add_argument("--real", type=Path, help="this capture's priors (for 'shuffled' and 'real')")
    ap.add_argument("--other-scene", type=Path, help="another capture's priors (for 'other_scene')")
    ap.add_argument("--kinds", nargs="+", default=None, choices=KINDS, help="default: every kind the inputs allow")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True, help="prior folders and runs (reruns reuse finished runs)")
    ap.add_argument("--overrides", nargs="*", default=[], help="extra Hydra overrides for every run")
    args = ap.parse_args()
    folder, _, factor = args.dataset.partition(":")
    data, downscale = Path(folder), int(factor or 1)
    if not data.is_dir():
        raise SystemExit(f"error: {data}: not a folder")
    layout = read_layout(data)
    sizes = dict(zip(prior_keys([f.name for f in layout.frames]), ((f.width, f.height) for f in layout.frames)))
    real = read_priors(args.real) if args.real else None
    other = read_priors(args.other_scene) if args.other_scene else None
    kinds = args.kinds or [k for k in KINDS if (k not in ("shuffled", "real") or real) and
                           (k != "other_scene" or other)]
    rng = np.random.default_rng(args.seed)
    base = train(data, downscale, None, 0.0, args, args.out / "lambda_0")
    rows = [("none (lambda_depth=0)", base, None)]
    for kind in kinds:
        priors = args.real if kind == "real" else args.out / "priors" / kind
        if kind != "real" and not (priors / "depth_meta.json").exists():
            write_priors(priors, bad_priors(kind, sizes, real, other, rng), kind)
        rows.append((kind, train(data, downscale, priors, 0.1, args, args.out / kind), priors))
    print(f"{data} at 1/{downscale}, {args.steps} steps, seed {args.seed}, overrides {args.overrides}")
    print("| priors | test PSNR | vs lambda_depth=0 | test SSIM | mean weight | verdict |")
    print("|---|---|---|---|---|---|")
    for name, m, _ in rows:
        d = m["depth"]
        delta = m["test"]["psnr"] - base["test"]["psnr"]
        print(f"| {name} | {m['test']['psnr']:.2f} | {delta:+.2f} dB | {m['test']['ssim']:.3f} | "
              f"{d.get('mean_weight', '')} | {d.get('summary', '')} |")


if __name__ == "__main__":
    main()
