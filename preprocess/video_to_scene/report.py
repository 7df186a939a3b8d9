"""``OUT_DIR/scene.json`` and the one-screen summary: what was sampled and registered, how good the model
is, seconds per stage, and the training command to run next."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

REPORT_NAME = "scene.json"


def train_command(out_dir: Path, depth: str) -> str:
    """The ``python -m s3dgs.train`` command for the dataset in ``out_dir`` (priors in ``out_dir/depth``)."""
    cmd = f"python -m s3dgs.train data_dir={shlex.quote(str(out_dir))}"
    return cmd + (" lambda_depth=0" if depth == "none" else " lambda_depth=0.1")


def build_report(out_dir: Path, frames: dict, stats: dict, camera: dict, depth: dict | None, stages: dict,
                 settings: dict) -> dict[str, Any]:
    """The scene.json record from the stages' results."""
    sampled = len(frames["frames"])
    return {"input": frames["input"], "out_dir": str(out_dir), "settings": settings,
            "frames": {"sampled": sampled, "registered": stats["registered"],
                       "registration_rate": stats["registered"] / sampled, "unregistered": stats["unregistered"],
                       "size": frames["size"]},
            "sfm": {k: stats[k] for k in ("points", "mean_reprojection_error_px", "mean_track_length")},
            "camera": camera, "depth": depth, "stages": stages,
            "seconds": sum(s["seconds"] for s in stages.values()),
            "next": train_command(out_dir, settings["depth"])}


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The report as a few lines for the terminal."""
    f, sfm, cam = report["frames"], report["sfm"], report["camera"]
    unreg = f["unregistered"]
    lines = [f"frames: {f['sampled']} sampled at {f['size'][0]}x{f['size'][1]}, {f['registered']} registered "
             f"({100 * f['registration_rate']:.0f}%)"
             + (f"; not registered: {', '.join(unreg[:5])}{' ...' if len(unreg) > 5 else ''}" if unreg else ""),
             f"poses: {sfm['points']} points, mean reprojection error {sfm['mean_reprojection_error_px']:.2f} px, "
             f"mean track length {sfm['mean_track_length']:.1f}; camera {cam['model']} "
             f"{', '.join(f'{p:.4g}' for p in cam['params'])}",
             "depth: " + (f"{report['depth']['backend']} priors in {Path(report['out_dir']) / 'depth'}"
                          if report["depth"] else "none"),
             "seconds: " + ", ".join(f"{name} {s['seconds']:.1f}" + (" (done before)" if s["skipped"] else "")
                                     for name, s in report["stages"].items()),
             f"dataset: {report['out_dir']} (images/, sparse/0/{', depth/' if report['depth'] else ''}); "
             f"report: {Path(report['out_dir']) / REPORT_NAME}",
             f"next: {report['next']}"]
    return lines
