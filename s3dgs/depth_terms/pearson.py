"""``pearson``: ``1 - corr(r, p)`` between the rendered disparity and the prior (FSGS, SparseGS). Invariant to
positive scale and shift of both (so also to the scene's scale); needs no sparse points."""

from __future__ import annotations

import torch

from s3dgs.data.scene import View
from s3dgs.depth_terms.base import DepthTerm
from s3dgs.losses import Weight, spread_floor


def pearson_loss(r: torch.Tensor, p: torch.Tensor, mask: torch.Tensor, weight: Weight = None) -> torch.Tensor:
    """``1 - Pearson correlation`` of ``r`` and ``p`` over ``mask`` (weighted by ``weight``: each pixel's share of the
    covariance and variances); ``r``'s standard deviation counts as at least :func:`spread_floor`."""
    r, p = r[mask], p[mask]
    w = torch.ones_like(r) if weight is None else weight[mask]
    sw = w.sum().clamp_min(1e-12)
    rc, pc = r - (w * r).sum() / sw, p - (w * p).sum() / sw
    var_r = torch.maximum((w * rc * rc).sum() / sw, spread_floor(r) ** 2)
    return 1 - (w * rc * pc).sum() / sw / (var_r * (w * pc * pc).sum() / sw).sqrt().clamp_min(1e-12)


class PearsonTerm(DepthTerm):
    """:func:`pearson_loss` per view; prepares only the anchor fits that judge the priors."""

    def view_loss(self, view: View, r: torch.Tensor, prior: torch.Tensor, mask: torch.Tensor,
                  weight: Weight) -> torch.Tensor:
        return pearson_loss(r, prior, mask, weight)
