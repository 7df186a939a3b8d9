"""``metrics.json``: a model's evaluation (:func:`s3dgs.metrics.evaluate_scene`) and what the run's record says
(steps, training time, the depth prior's facts and verdicts), the same at the end of training and from
``python -m s3dgs.eval`` on a finished run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from s3dgs import reliability
from s3dgs.checkpoint import Record
from s3dgs.data.scene import Scene
from s3dgs.metrics import RenderFn, evaluate_scene


def depth_facts(cfg: DictConfig, scene: Scene, alignment: dict[str, Any]) -> dict[str, Any]:
    """The ``depth`` block of ``metrics.json`` without the verdicts: the loss (``none`` when the run has no depth
    term), how the priors were aligned (``alignment``: the depth term's ``alignment``, ``views_anchored``,
    ``views_scale_field``), their kind and source, and how many training views have one."""
    used = cfg.lambda_depth > 0 and scene.prior_kind is not None
    return {"loss": cfg.depth_loss.name if used else "none",
            "alignment": alignment["alignment"] if used else "none", "kind": scene.prior_kind,
            "source": scene.prior_source, "views_with_prior": sum(v.prior is not None for v in scene.train),
            "views_anchored": alignment["views_anchored"], "views_scale_field": alignment["views_scale_field"],
            "train_views": len(scene.train)}


def run_metrics(render_fn: RenderFn, scene: Scene, cfg: DictConfig, record: Record, num_gaussians: int,
                device: torch.device, renders_dir: Path | None = None) -> dict[str, Any]:
    """``metrics.json``'s content: :func:`~s3dgs.metrics.evaluate_scene` of ``render_fn`` (test views' PNGs into
    ``renders_dir`` if given), then the run's facts from ``cfg`` and ``record``, the per-view table last."""
    metrics: dict[str, Any] = evaluate_scene(render_fn, scene, renders_dir)
    views = metrics.pop("views")
    return metrics | {"num_gaussians": num_gaussians, "train_seconds": round(record.train_seconds, 2),
                      "steps": record.step, "lambda_depth": cfg.lambda_depth, "depth_loss": cfg.depth_loss.name,
                      "depth": record.depth | reliability.report(record.trust), "num_train_views": len(scene.train),
                      "device": str(device), "views": views}
