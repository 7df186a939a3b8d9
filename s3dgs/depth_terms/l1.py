"""``l1``: for metric priors (depth_meta.json kind ``depth``). ``mean |k*r - p| / mean(p)`` with ``k`` one
scene-to-metric factor for the whole scene, fitted once to the sparse points (:func:`s3dgs.alignment.metric_scale`).
Invariant to the units (a common scale of scene and prior, through ``k``), not to a per-image scale or shift of
the prior: that is the information a metric prior adds."""

from __future__ import annotations

import logging

import torch

from s3dgs import alignment
from s3dgs.data.scene import Scene, View
from s3dgs.depth_terms.base import Anchors, DepthTerm
from s3dgs.errors import TrainError
from s3dgs.losses import Weight, weighted_mean

log = logging.getLogger(__name__)


def metric_l1_loss(r: torch.Tensor, p: torch.Tensor, mask: torch.Tensor, scene_to_metric: float,
                   weight: Weight = None) -> torch.Tensor:
    """Relative L1 ``mean|k*r - p| / mean(p)`` of rendered depth ``r`` (scene units) and metric prior ``p``."""
    p = p[mask]
    w = None if weight is None else weight[mask]
    return weighted_mean((scene_to_metric * r[mask] - p).abs(), w) / p.abs().mean().clamp_min(1e-12)


class L1Term(DepthTerm):
    """:func:`metric_l1_loss` with one scene-to-metric factor :attr:`scene_to_metric` (metres per scene unit)."""

    scene_to_metric: float = 1.0

    def prepare(self, scene: Scene, seed: int) -> Anchors:
        if scene.prior_kind != "depth":
            raise TrainError("depth_loss=l1 needs metric priors (depth_meta.json kind 'depth'); these are relative "
                             "inverse depth: use depth_loss=anchored (default), ssi or pearson")
        anchors = super().prepare(scene, seed)
        self.alignment = "per_scene"
        self.scene_to_metric = alignment.metric_scale(scene.train, scene.points)
        log.info("depth_loss=l1: %.4g metres per scene unit", self.scene_to_metric)
        return anchors

    def view_loss(self, view: View, r: torch.Tensor, prior: torch.Tensor, mask: torch.Tensor,
                  weight: Weight) -> torch.Tensor:
        return metric_l1_loss(r, prior, mask, self.scene_to_metric, weight)
