"""What every depth loss is: a :class:`DepthTerm`, prepared once from the scene and its priors, a loss per step,
a report for ``metrics.json``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from omegaconf import DictConfig

from s3dgs import alignment
from s3dgs.data.scene import Scene, View
from s3dgs.errors import TrainError
from s3dgs.losses import Scale

MIN_PIXELS = 16  # a view with fewer usable pixels gets no depth term that step
ALIGNMENT_MODES = ("auto", "per_image", "per_sequence")


@dataclass
class Anchors:
    """Each view's fit of its prior to the sparse points, which judge the prior (:mod:`s3dgs.reliability`) and,
    when trusted, back-project it into initial points (:mod:`s3dgs.init`); and why the other views have none."""

    fits: dict[str, alignment.Alignment]
    problems: dict[str, str]


class DepthTerm(ABC):
    """One depth loss of the ``depth_loss`` config ``cfg``. :meth:`prepare` fits what it needs once (it may be
    called again on a changed scene: it starts afresh); :meth:`loss` compares a render with a view's prior;
    :meth:`report` says how the priors were aligned."""

    pooled: ClassVar[bool] = False  # can align every view's prior by one fit (depth_loss.alignment=per_sequence)

    def __init__(self, cfg: DictConfig):
        mode = cfg.get("alignment", "auto")
        if mode not in ALIGNMENT_MODES:
            raise TrainError(f"depth_loss.alignment={mode!r}: use auto, per_image or per_sequence")
        if mode == "per_sequence" and not self.pooled:
            raise TrainError(f"depth_loss.alignment=per_sequence aligns priors to the sparse points, which "
                             f"depth_loss={cfg.name} does not: use depth_loss=anchored or depth_loss.alignment=auto")
        self.cfg = cfg
        self.alignment = "per_image"  # how prepare aligned the priors: per_image, per_sequence or per_scene
        self.fits: dict[str, alignment.Alignment] = {}  # each view's alignment of its prior that the loss uses

    def alignment_mode(self, scene: Scene) -> str:
        """``depth_loss.alignment`` resolved: ``auto`` is ``per_sequence`` for a pooled term on priors that share one
        scale/shift over the sequence (depth_meta.json ``normalization: per_sequence``, depth.ndjson), else
        ``per_image``."""
        mode = self.cfg.get("alignment", "auto")
        if mode == "auto":
            return "per_sequence" if self.pooled and scene.prior_normalization == "per_sequence" else "per_image"
        return mode

    def prepare(self, scene: Scene, seed: int) -> Anchors:
        """Fit what the loss needs from ``scene``'s training priors and sparse points (RANSAC seeded with ``seed``);
        returns each view's anchor fit. Here: the anchor fits with the default settings, and nothing of its own."""
        self.alignment, self.fits = "per_image", {}
        fits, failed = alignment.anchored_alignments(scene.train, scene.points, scene.prior_kind, seed)
        return Anchors(fits, failed)

    def loss(self, view: View, r: torch.Tensor, prior: torch.Tensor, mask: torch.Tensor,
             weight: torch.Tensor | None = None) -> torch.Tensor | None:
        """The loss of the render ``r [H, W]`` (in the prior's space, :func:`s3dgs.losses.to_prior_space`) against
        ``view``'s ``prior [H, W]`` over ``mask [H, W]``, each pixel weighted by the prior's confidence ``weight``
        ``[H, W]`` in [0, 1] (None: 1); None with fewer than :data:`MIN_PIXELS` pixels or when the term has
        nothing for this view."""
        if int(mask.sum()) < MIN_PIXELS:
            return None
        return self.view_loss(view, r, prior, mask, weight)

    @abstractmethod
    def view_loss(self, view: View, r: torch.Tensor, prior: torch.Tensor, mask: torch.Tensor,
                  weight: torch.Tensor | None) -> torch.Tensor | None:
        """:meth:`loss` on enough pixels."""

    def fit_maps(self, view: View, device: torch.device) -> tuple[Scale, Scale] | None:
        """``view``'s alignment (:attr:`fits`) as scale and offset values or ``[H, W]`` maps on ``device``; None
        without one."""
        fit = self.fits.get(view.key)
        return None if fit is None else alignment.alignment_maps(fit, view.height, view.width, device)

    def report(self) -> dict[str, Any]:
        """For ``metrics.json``: how the priors were aligned, how many views the loss aligns to the sparse points,
        and how many of those by a scale field."""
        return {"alignment": self.alignment, "views_anchored": len(self.fits),
                "views_scale_field": sum(isinstance(f, alignment.ScaleField) for f in self.fits.values())}
