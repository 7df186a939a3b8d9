"""One table of all jobs' metrics for a Hydra multirun, written into the sweep folder.

Registered in ``configs/train.yaml`` as a Hydra callback: after the last job (basic, joblib, or submitit on
Slurm, whose launcher waits for its jobs) it reads ``<sweep dir>/<job>/metrics.json`` and writes
``sweep_metrics.csv``, ``sweep_metrics.md`` and ``sweep_report.html`` (the table, then each test view's renders
of every job one above the other, linked relatively) there. ``python -m s3dgs.sweep SWEEP_DIR`` rebuilds them,
e.g. after a sweep whose launching process was stopped before its jobs finished.
"""

from __future__ import annotations

import csv
import html
import io
import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from preprocess.atomic_io import atomic_write_bytes

COLUMNS = ["test.psnr", "test.ssim", "test.depth_abs_rel", "test.depth_delta1", "num_gaussians", "train_seconds",
           "steps"]
# metrics.json keys (the last dotted part) by the direction that improves them
MAXIMIZE = ("psnr", "ssim", "depth_delta1")
MINIMIZE = ("depth_abs_rel", "num_gaussians", "train_seconds")


def objective_direction(objective: str) -> str:
    """Optuna's ``direction`` for the metric ``objective`` (dotted metrics.json key, e.g. ``test.psnr``):
    ``"maximize"`` or ``"minimize"``; ``psnr_masked``/``ssim_masked`` follow their metric."""
    name = objective.rsplit(".", 1)[-1].removesuffix("_masked")
    if name in MAXIMIZE or name in MINIMIZE:
        return "maximize" if name in MAXIMIZE else "minimize"
    raise ValueError(f"objective={objective}: no known direction (known: {', '.join(MAXIMIZE + MINIMIZE)}); "
                     "set hydra.sweeper.direction=maximize or =minimize")


def register_resolvers() -> None:
    """``${objective_direction:${objective}}`` for the sweeper configs in ``configs/hydra/sweeper``."""
    if not OmegaConf.has_resolver("objective_direction"):
        OmegaConf.register_new_resolver("objective_direction", objective_direction)


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


def _overrides(job_dir: Path) -> list[str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.exists():
        return []
    return [ln[2:].strip() for ln in path.read_text().splitlines() if ln.startswith("- ")]


def write_sweep_table(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Collect ``<sweep_dir>/*/metrics.json`` into ``sweep_metrics.csv`` / ``.md``; returns the rows. The
    ``overrides`` column lists what differs between jobs (overrides shared by all jobs are left out)."""
    sweep_dir = Path(sweep_dir)
    paths = sorted(sweep_dir.glob("*/metrics.json"), key=lambda p: (len(p.parent.name), p.parent.name))
    overrides = [_overrides(p.parent) for p in paths]
    shared = set.intersection(*map(set, overrides)) if len(overrides) > 1 else set()
    rows = []
    for mpath, ov in zip(paths, overrides):
        flat = _flat(json.loads(mpath.read_text()))
        rows.append({"job": mpath.parent.name, "overrides": " ".join(o for o in ov if o not in shared)}
                    | {c: flat.get(c, "") for c in COLUMNS})
    header = ["job", "overrides"] + COLUMNS
    buf = io.StringIO()
    writer = csv.DictWriter(buf, header)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(sweep_dir / "sweep_metrics.csv", buf.getvalue().encode())
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(fmt(r[h]) for h in header) + " |" for r in rows]
    atomic_write_bytes(sweep_dir / "sweep_metrics.md", ("\n".join(md) + "\n").encode())
    atomic_write_bytes(sweep_dir / "sweep_report.html", sweep_report(sweep_dir, header, [
        [fmt(r[h]) for h in header] for r in rows]).encode())
    return rows


def sweep_report(sweep_dir: Path, header: list[str], cells: list[list[str]]) -> str:
    """HTML page: the metrics table (``header`` and ``cells``, one row per job, job first), then for each
    test view its ``<job>/renders/<key>.png`` (render | ground truth | depth) of every job, one above the
    other so they compare by eye. Image links are relative to ``sweep_dir``."""
    esc = html.escape
    table = ["<table>", "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"]
    table += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in cells]
    table.append("</table>")
    labels = {row[0]: f"{row[0]}: {row[1]}" if row[1] else row[0] for row in cells}
    keys = sorted({p.relative_to(sweep_dir / job / "renders").as_posix() for job in labels
                   for p in (sweep_dir / job / "renders").rglob("*.png")})
    views = []
    for key in keys:
        views.append(f"<h2>{esc(key.removesuffix('.png'))}</h2>")
        for job, label in labels.items():
            src = f"{job}/renders/{key}"
            img = (f'<img src="{esc(src)}" alt="{esc(src)}">' if (sweep_dir / src).is_file()
                   else "<em>no render (save_renders=false)</em>")
            views.append(f"<figure>{img}<figcaption>{esc(label)}</figcaption></figure>")
    if not keys:
        views.append("<p>No renders: the jobs ran with save_renders=false.</p>")
    style = ("body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}td,th{border:1px solid #bbb;"
             "padding:2px 8px;text-align:right}figure{margin:0 0 6px}img{image-rendering:pixelated;max-width:100%}"
             "figcaption{font-size:small}")
    return ("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>sweep report</title>"
            f"<style>{style}</style></head><body>\n<h1>Sweep {esc(sweep_dir.name)}</h1>\n"
            + "\n".join(table) + "\n<p>Each image: test render | ground truth | rendered inverse depth.</p>\n"
            + "\n".join(views) + "\n</body></html>\n")


class SweepTable(Callback):
    """Hydra callback: write the sweep table when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            rows = write_sweep_table(sweep_dir)
            print(f"sweep table of {len(rows)} jobs: {sweep_dir / 'sweep_metrics.md'}")
            print((sweep_dir / "sweep_metrics.md").read_text(), end="")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m s3dgs.sweep SWEEP_DIR")
    write_sweep_table(sys.argv[1])
