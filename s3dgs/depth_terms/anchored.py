"""``anchored`` (the default): the prior aligned once per image to the sparse points by a robust fit
(:func:`s3dgs.alignment.anchored_alignments`: RANSAC + least squares on the inliers, refined into a smooth scale
field, a scale map, where the view sees enough points; one fit for all views' points pooled for priors normalised
per sequence; one metric scale for the scene for sensor depth), then, in the prior's normalised units,
Geman-McClure ``x^2 / (x^2 + c^2)`` of the residual plus ``grad_weight`` x the L1 of the residual's image
gradient (finite differences between neighbouring pixels, i.e. between the gradients of the two maps). Residuals
within half the prior's quantisation step (gradients within one step) cost nothing. Invariant to scene scale and
to the prior's scale and shift (through the fit), like ``sparse``; the value term is bounded per pixel, so depth
edges where the prior is blurred or wrong cannot dominate. Views without a reliable fit use ``ssi``."""

from __future__ import annotations

import logging

import torch

from s3dgs import alignment
from s3dgs.data.scene import Scene, View
from s3dgs.depth_terms.base import Anchors, DepthTerm
from s3dgs.depth_terms.ssi import ssi_loss
from s3dgs.losses import Scale, Weight, aligned_residual, weighted_mean

log = logging.getLogger(__name__)


def geman_mcclure(x: torch.Tensor, c: float) -> torch.Tensor:
    """``x^2 / (x^2 + c^2)``: quadratic below ``c``, bounded by 1 (a residual far beyond ``c`` barely pulls)."""
    x2 = x * x
    return x2 / (x2 + c * c)


def anchored_loss(r: torch.Tensor, p: torch.Tensor, mask: torch.Tensor, scale: Scale, offset: Scale,
                  robust_c: float = 0.25, grad_weight: float = 0.5, quant_step: float = 0.0,
                  weight: Weight = None) -> torch.Tensor:
    """Robust loss between the render ``r [H, W]`` (prior space, scene units) and the prior ``p [H, W]`` aligned to
    the sparse points (``scale*p + offset``), over ``mask [H, W]``, in the prior's normalised units ``x``:

    ``mean rho(shrink(x, h)) + grad_weight * mean relu(|dx| - 2h)``, ``rho`` Geman-McClure with scale
    ``robust_c``, ``shrink(x, h) = max(|x| - h, 0)``, ``dx`` the differences of ``x`` between horizontal /
    vertical neighbours that are both in ``mask`` (the difference of the two maps' finite-difference
    gradients, per pixel), ``h`` half the prior's quantisation step ``quant_step`` (prior units) in normalised
    units: a render within half a step of the prior everywhere costs nothing (its gradients then differ by at
    most one step), so smooth surfaces need not follow the prior's 16-bit staircase. With ``weight``, each
    pixel's term (each neighbour pair's: the lower of the two) is multiplied by its confidence."""
    x, mad = aligned_residual(r, p, mask, scale, offset)
    h = 0.5 * quant_step / mad
    value = weighted_mean(geman_mcclure(torch.relu(x[mask].abs() - h), robust_c), None if weight is None else weight[mask])
    if grad_weight <= 0:
        return value
    dx = [x[:, 1:] - x[:, :-1], x[1:] - x[:-1]]
    pairs = [mask[:, 1:] & mask[:, :-1], mask[1:] & mask[:-1]]
    grads = torch.cat([d[m] for d, m in zip(dx, pairs)])
    if len(grads) == 0:
        return value
    pair_weight = None if weight is None else torch.cat(
        [torch.minimum(a, b)[m] for a, b, m in zip((weight[:, 1:], weight[1:]), (weight[:, :-1], weight[:-1]), pairs)])
    return value + grad_weight * weighted_mean(torch.relu(grads.abs() - 2 * h), pair_weight)


class AnchoredTerm(DepthTerm):
    """:func:`anchored_loss` on each view's robust fit to the sparse points (``inlier_threshold``,
    ``min_inlier_ratio``, ``scale_nodes``, ``points_per_node``, ``scale_smooth``, ``robust_c``, ``grad_weight`` in
    ``configs/depth_loss/anchored.yaml``); :func:`~s3dgs.depth_terms.ssi.ssi_loss` for a view without one."""

    pooled = True

    def prepare(self, scene: Scene, seed: int) -> Anchors:
        """The loss's fits are the anchors: per view, pooled over the sequence, or for sensor depth one metric scale
        for the scene with offset 0 in every view (:func:`~s3dgs.alignment.metric_scale`)."""
        c, train, points, kind = self.cfg, scene.train, scene.points, scene.prior_kind
        self.alignment = "per_image"
        if scene.prior_source == "sensor":
            k = alignment.metric_scale(train, points)
            self.alignment = "per_scene"
            log.info("depth_loss=anchored: sensor depth, one scale for the scene: %.4g metres per scene unit", k)
            self.fits = {v.key: (1.0 / k, 0.0) for v in train if v.prior is not None}
            return Anchors(self.fits, {})
        if self.alignment_mode(scene) == "per_sequence":
            fit = alignment.sequence_alignment(train, points, kind, seed, c.inlier_threshold, c.min_inlier_ratio)
            if not isinstance(fit, str):
                self.alignment = "per_sequence"
                log.info("depth_loss=anchored: one alignment for the sequence, scale %.4g offset %.4g", *fit)
                self.fits = alignment.sequence_alignments(train, points, kind, fit, seed, c.inlier_threshold,
                                                          c.min_inlier_ratio, c.scale_nodes, c.points_per_node,
                                                          c.scale_smooth)
                own = sum(isinstance(f, alignment.ScaleField) for f in self.fits.values())
                if own:
                    log.info("depth_loss=anchored: %d of %d views see enough sparse points for a scale field of "
                             "their own", own, len(self.fits))
                return Anchors(self.fits, {})
            log.warning("depth_loss.alignment=per_sequence: the pooled fit to the sparse points is unreliable "
                        "(%s); aligning each view on its own instead", fit)
        self.fits, failed = alignment.anchored_alignments(train, points, kind, seed, c.inlier_threshold,
                                                          c.min_inlier_ratio, c.scale_nodes, c.points_per_node,
                                                          c.scale_smooth)
        return Anchors(self.fits, failed)

    def view_loss(self, view: View, r: torch.Tensor, prior: torch.Tensor, mask: torch.Tensor,
                  weight: Weight) -> torch.Tensor:
        fit = self.fit_maps(view, r.device)
        if fit is None:
            return ssi_loss(r, prior, mask, weight)
        return anchored_loss(r, prior, mask, *fit, robust_c=self.cfg.robust_c, grad_weight=self.cfg.grad_weight,
                             quant_step=view.prior_step, weight=weight)
