"""``sparse``: the reference 3DGS implementation's recipe (``-d``). Per image, a scale/offset mapping the prior
onto the sparse points' inverse depth is fitted once (median / mean absolute deviation,
:func:`s3dgs.alignment.sparse_alignments`); the loss is L1 between the rendered disparity and the aligned prior, in
the prior's normalised units. Invariant to scene scale and to the prior's scale and shift (through the fit to the
points), but not to how the rendering's own scale drifts from the points. Views without a fit have no depth
term."""

from __future__ import annotations

import torch

from s3dgs import alignment
from s3dgs.data.scene import Scene, View
from s3dgs.depth_terms.base import Anchors, DepthTerm
from s3dgs.errors import TrainError
from s3dgs.losses import Scale, Weight, aligned_residual, weighted_mean


def sparse_loss(r: torch.Tensor, p: torch.Tensor, mask: torch.Tensor, scale: Scale, offset: Scale,
                weight: Weight = None) -> torch.Tensor:
    """L1 between rendered disparity ``r`` and the prior aligned to the sparse points, ``scale*p + offset``,
    in the prior's normalised units (divided by ``scale`` x the prior's mean absolute deviation)."""
    return weighted_mean(aligned_residual(r, p, mask, scale, offset)[0][mask].abs(),
                         None if weight is None else weight[mask])


class SparseTerm(DepthTerm):
    """:func:`sparse_loss` on each view's median/MAD fit to the sparse points."""

    def prepare(self, scene: Scene, seed: int) -> Anchors:
        if scene.prior_kind != "inverse_depth":
            raise TrainError("depth_loss=sparse aligns relative inverse-depth priors; these priors are metric "
                             "depth: use depth_loss=anchored, l1 or ssi")
        anchors = super().prepare(scene, seed)
        self.fits = alignment.sparse_alignments(scene.train, scene.points)
        return anchors

    def view_loss(self, view: View, r: torch.Tensor, prior: torch.Tensor, mask: torch.Tensor,
                  weight: Weight) -> torch.Tensor | None:
        fit = self.fit_maps(view, r.device)
        return None if fit is None else sparse_loss(r, prior, mask, *fit, weight=weight)
