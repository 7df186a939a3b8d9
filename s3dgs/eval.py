"""``python -m s3dgs.eval RUN_DIR``: re-evaluate a finished training run and render a camera-path video.

Reads the run's saved config (``.hydra/config.yaml``) and ``ckpt.pt``, loads the scene as the trainer did,
and writes into the run folder ``metrics.json`` (test and train metrics measured again, the training facts
kept), ``renders/`` when the run was configured with ``save_renders``, and ``path.mp4``: a smooth path
through the training cameras in name order.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from preprocess.atomic_io import atomic_write_json
from preprocess.errors import S3dgsError
from s3dgs.camera_path import write_path_video
from s3dgs.report import run_metrics
from s3dgs.run import load_run

TRAINING_FIELDS = ("train_seconds", "device")  # kept from the run's metrics.json: facts of training, not of eval


class EvalError(S3dgsError, ValueError):
    """Evaluation options that cannot work; the message says what to change."""


def evaluate_run(run_dir: str | Path, video: bool = True, frames: int = 120, fps: float = 30,
                 device: str | None = None) -> dict[str, Any]:
    """Re-evaluate the run in ``run_dir`` from its config and ``ckpt.pt``; write ``metrics.json`` (the
    trainer's keys; ``TRAINING_FIELDS`` kept from the existing file) and, with ``video``, ``path.mp4``
    (``frames`` frames at ``fps``). ``device`` overrides the run's. Returns the metrics."""
    if frames < 1 or fps <= 0:
        raise EvalError(f"--frames {frames} --fps {fps}: both must be positive")
    run_dir = Path(run_dir).expanduser()
    run = load_run(run_dir, device)
    metrics = run_metrics(run.render, run.scene, run.cfg, run.record, len(run.params["means"]), run.device,
                          run_dir / "renders" if run.cfg.save_renders else None)
    metrics_path = run_dir / "metrics.json"
    old = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    metrics |= {k: old[k] for k in TRAINING_FIELDS if k in old}
    atomic_write_json(metrics_path, metrics)
    if video:
        write_path_video(run.render, run.scene.train, run_dir / "path.mp4", frames, fps)
    return metrics


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m s3dgs.eval",
        description="Re-evaluate a finished training run: measure test and train views again (metrics.json) and "
                    "render a smooth camera path through the training views (path.mp4), into the run folder.",
        epilog="examples:\n  python -m s3dgs.eval outputs/2025-01-31/12-00-00\n"
               "  python -m s3dgs.eval multirun/2025-01-31/12-00-00/0 --no-video --device cpu",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path,
                   help="a run folder of python -m s3dgs.train (holds .hydra/config.yaml and ckpt.pt)")
    p.add_argument("--no-video", dest="video", action="store_false", help="metrics only, no path.mp4")
    p.add_argument("--frames", type=int, default=120, metavar="N", help="frames in path.mp4 (default: 120)")
    p.add_argument("--fps", type=float, default=30, help="frame rate of path.mp4 (default: 30)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: the run's device setting)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        metrics = evaluate_run(args.run_dir, args.video, args.frames, args.fps, args.device)
    except S3dgsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for split in ("test", "train"):
        if split in metrics:
            print(f"{split}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics[split].items()))
    print(f"wrote {args.run_dir / 'metrics.json'}" + (f" and {args.run_dir / 'path.mp4'}" if args.video else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
