"""Time to quality on CPU: test PSNR against training seconds (wall and CPU), ours beside OpenSplat ``--cpu``.

For each capture (``DIR[:DOWNSCALE]``), one after the other so that no two runs share the machine:

- ours: ``python -m s3dgs.train`` with ``--steps``, evaluating the test views every ``--eval-every`` steps; the
  curve is read from its TensorBoard events (``test/psnr`` against ``time/train_seconds`` and
  ``time/train_cpu_seconds``: evaluations excluded);
- OpenSplat (with ``--opensplat BINARY``): ``opensplat DIR -d DOWNSCALE -n STEPS --num-downscales 0
  --val-image IMAGE --val-render DIR`` (trained and scored at the same size as ours; ``IMAGE`` is our first test
  view, held out by both); its curve is the PSNR of the validation renders it writes every 10 steps against that
  image resized to the render, against the time of its ``Step N`` line from its first (start-up excluded, as
  ours; its validation renders are counted in its time). Its renderer sorts Gaussians wrongly (see ``docs/performance.md``), so its PLYs score lower in any
  correct renderer; the PSNR here is its own renderer's, of its own held-out view. Captures whose images need
  undistorting (fern's and beer's cameras both carry a k1) get no OpenSplat PSNR, only its times: it undistorts and
  crops them its own way, so its renders do not line up with our images.

Prints, per capture, the curves at a few times and the time each run first reached ``--target`` dB, and writes
``curves.png`` and ``curves.json`` into ``--out``. For example (docs/performance.md)::

    python benchmarks/time_to_quality.py data_local/fern:2 data_local/beer:4 --steps 1000 \\
        --opensplat /path/to/opensplat --threads 2 --out /tmp/ttq

Step times at an equal Gaussian count (fern's 10091 sparse points: ours capped there, OpenSplat before its
first densification after step 500), one thread each::

    python benchmarks/time_to_quality.py data_local/fern:2 --steps 300 --eval-every 100 --threads 1 \\
        --opensplat /path/to/opensplat --opensplat-steps 300 --no-opensplat-val --out /tmp/ttq_step \\
        --overrides strategy.cap_max=10091 lambda_depth=0
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from s3dgs.data.frames import read_layout


def thread_env(threads: int) -> dict[str, str]:
    """The environment of a run limited to ``threads`` threads (torch, numba, OpenMP)."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "NUMBA_NUM_THREADS": str(threads)}


def run_ours(data: Path, downscale: int, steps: int, eval_every: int, threads: int, out: Path,
             overrides: list[str]) -> list[dict[str, float]]:
    """Train ours; returns the curve ``[{step, seconds, cpu_seconds, psnr}]`` at each evaluation."""
    cmd = [sys.executable, "-m", "s3dgs.train", f"data_dir={data}", f"data.downscale={downscale}", f"steps={steps}",
           f"log.eval_every={eval_every}", "log.every=25", "save_renders=false", f"hydra.run.dir={out}", *overrides]
    log_path = out.with_suffix(".log")
    with open(log_path, "w") as log:
        done = subprocess.run(cmd, env=thread_env(threads), stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        last = (log_path.read_text().strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"error: training {data} failed: {last} (full log: {log_path})")
    events = EventAccumulator(str(out / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    scalar = lambda tag: {e.step: e.value for e in events.Scalars(tag)}  # noqa: E731
    wall, cpu, psnr = scalar("time/train_seconds"), scalar("time/train_cpu_seconds"), scalar("test/psnr")
    return [{"step": s, "seconds": wall[s], "cpu_seconds": cpu[s], "psnr": psnr[s]} for s in sorted(psnr) if s in wall]


def image_psnr(render: np.ndarray, target: np.ndarray) -> float:
    """PSNR (dB) of two uint8 images of one size."""
    mse = np.mean((render.astype(np.float64) - target.astype(np.float64)) ** 2) / 255.0 ** 2
    return float(-10.0 * np.log10(max(mse, 1e-12)))


def run_opensplat(binary: Path, data: Path, downscale: int, steps: int, val_image: Path | None, threads: int,
                  out: Path) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Train OpenSplat; returns its curve (empty without ``val_image``) and its totals: seconds and CPU seconds of
    the whole process (start-up included) and its training seconds per step (between its first and last
    ``Step N`` lines, start-up excluded, as ours)."""
    renders = out / "val"
    renders.mkdir(parents=True, exist_ok=True)
    cmd = [str(binary), str(data), "--cpu", "-d", str(downscale), "-n", str(steps), "--num-downscales", "0",
           "-o", str(out / "splat.ply")]
    if val_image is not None:
        cmd += ["--val-image", val_image.name, "--val-render", str(renders)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    step_times = {}
    with open(out / "opensplat.log", "w") as log, subprocess.Popen(
            cmd, env=thread_env(threads), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=out, text=True) as p:
        for line in p.stdout:
            log.write(line)
            found = re.match(r"Step (\d+):", line)
            if found:
                step_times[int(found.group(1))] = time.time() - t0
    if p.returncode:
        raise SystemExit(f"error: opensplat exited with {p.returncode}; see {out / 'opensplat.log'}")
    seconds = time.time() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    first, last = min(step_times), max(step_times)
    per_step = (step_times[last] - step_times[first]) / max(last - first, 1)
    totals = {"seconds": seconds, "cpu_seconds": cpu, "sec_per_step": per_step}
    curve = []
    if val_image is not None:
        target = cv2.imread(str(val_image))
        for png in sorted(renders.glob("*.png"), key=lambda p: int(p.stem)):
            step = int(png.stem)
            if step % 100:
                continue
            render = cv2.imread(str(png))
            gt = cv2.resize(target, (render.shape[1], render.shape[0]), interpolation=cv2.INTER_AREA)
            t = step_times.get(step, png.stat().st_mtime - t0) - step_times[first]
            curve.append({"step": step, "seconds": t, "cpu_seconds": cpu * t / seconds, "psnr": image_psnr(render, gt)})
    return curve, totals


def first_reaching(curve: list[dict[str, float]], target: float) -> float | None:
    """Training seconds at the first evaluation at or above ``target`` dB (None if never)."""
    return next((c["seconds"] for c in curve if c["psnr"] >= target), None)


def plot(curves: dict[str, dict[str, list[dict[str, float]]]], path: Path) -> None:
    """One panel per capture: PSNR against training seconds for each trainer."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4), squeeze=False)
    for ax, (capture, runs) in zip(axes[0], curves.items()):
        for name, curve in runs.items():
            if curve:
                ax.plot([c["seconds"] for c in curve], [c["psnr"] for c in curve], marker=".", label=name)
        ax.set(title=capture, xlabel="training seconds (wall)", ylabel="test PSNR (dB)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("captures", nargs="+", help="DIR[:DOWNSCALE]")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--eval-every", type=int, default=100, help="a multiple of 25")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--target", type=float, default=29.0, help="dB whose first time is reported")
    ap.add_argument("--opensplat", type=Path, help="OpenSplat binary built for the CPU")
    ap.add_argument("--opensplat-steps", type=int, default=2000)
    ap.add_argument("--opensplat-val", action=argparse.BooleanOptionalAction, default=True,
                    help="its validation renders (its curve); --no-opensplat-val for step times without them")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--overrides", nargs="*", default=[], help="extra key=value for ours")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    curves, totals = {}, {}
    for spec in args.captures:
        data, _, ds = spec.partition(":")
        data, downscale = Path(data).resolve(), int(ds or 1)
        name = f"{data.name}:{downscale}"
        runs = curves[name] = {}
        runs["s3dgs"] = run_ours(data, downscale, args.steps, args.eval_every, args.threads,
                                 args.out / f"ours_{data.name}", args.overrides)
        if args.opensplat:
            frames = sorted(read_layout(data).frames, key=lambda f: f.name)
            # our first test view (every data.test_every-th image, sorted by name), when OpenSplat sees it as we do
            plain = all(f.distortion is None and f.split is None for f in frames)
            val = frames[0].path if plain and args.opensplat_val else None
            runs["opensplat"], totals[name] = run_opensplat(args.opensplat.resolve(), data, downscale,
                                                            args.opensplat_steps, val, args.threads,
                                                            args.out / f"opensplat_{data.name}")
        for trainer, curve in runs.items():
            reach = first_reaching(curve, args.target)
            shown = [c for c in curve if c["step"] in (400, 1000, 2000, curve[-1]["step"] if curve else 0)]
            print(f"{name} {trainer}: " + ", ".join(f"step {c['step']} {c['seconds']:.0f} s "
                                                   f"({c['cpu_seconds']:.0f} CPU s) {c['psnr']:.2f} dB"
                                                   for c in shown)
                  + f"; {args.target} dB at " + (f"{reach:.0f} s" if reach is not None else "never"))
        ours = runs["s3dgs"]
        if len(ours) > 1:  # steady state: from the first evaluation on
            per_step = (ours[-1]["seconds"] - ours[0]["seconds"]) / (ours[-1]["step"] - ours[0]["step"])
            print(f"{name} s3dgs: {per_step:.3f} s/step after step {ours[0]['step']}")
        if name in totals:
            t = totals[name]
            print(f"{name} opensplat: {args.opensplat_steps} steps in {t['seconds']:.0f} s with its start-up "
                  f"({t['cpu_seconds']:.0f} CPU s), {t['sec_per_step']:.3f} s/step")
    (args.out / "curves.json").write_text(json.dumps({"curves": curves, "opensplat_totals": totals}, indent=1))
    plot(curves, args.out / "curves.png")


if __name__ == "__main__":
    main()
