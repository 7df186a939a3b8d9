"""One table of all jobs' metrics for a Hydra multirun, written into the sweep folder.

Registered in ``configs/train.yaml`` as a Hydra callback: after the last job (basic, joblib, or submitit on
Slurm, whose launcher waits for its jobs) it reads ``<sweep dir>/<job>/metrics.json`` and writes
``sweep_metrics.csv`` and ``sweep_metrics.md`` there. ``python -m s3dgs.sweep SWEEP_DIR`` rebuilds them, e.g.
after a sweep whose launching process was stopped before its jobs finished.
"""

from __future__ import annotations

import csv
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
    return rows


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
