"""``ssi``: scale-and-shift invariant. Per image, the rendered map is fitted to the prior by closed-form least
squares ``a*r + b ~ normalize(p)`` (no gradient through the solve), then L1 in the prior's normalised units.
Invariant to the scene's scale and to any positive scale and any shift of the prior; needs no sparse points (it
is also what ``anchored`` uses for a view without a fit to them)."""

from __future__ import annotations

import torch

from s3dgs.data.scene import View
from s3dgs.depth_terms.base import DepthTerm
from s3dgs.losses import Weight, fit_affine, normalize, spread_floor, weighted_mean


def ssi_loss(r: torch.Tensor, p: torch.Tensor, mask: torch.Tensor, weight: Weight = None) -> torch.Tensor:
    """Scale-and-shift-invariant L1: the render ``r`` fitted to the prior ``p`` per image (see module doc)."""
    r, pn = r[mask], normalize(p[mask])
    a, b = fit_affine(r, pn, min_std=spread_floor(r))
    return weighted_mean((a * r + b - pn).abs(), None if weight is None else weight[mask])


class SsiTerm(DepthTerm):
    """:func:`ssi_loss` per view; prepares only the anchor fits that judge the priors."""

    def view_loss(self, view: View, r: torch.Tensor, prior: torch.Tensor, mask: torch.Tensor,
                  weight: Weight) -> torch.Tensor:
        return ssi_loss(r, prior, mask, weight)
