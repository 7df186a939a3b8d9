"""How far each training view's depth prior is trusted: a weight in [0, 1] per view, measured, with the reason.

A monocular network's prior can be wrong for a whole view (another scene, a constant or noise map, a model
that misreads the scene), so its weight is earned before training, from two kinds of multi-view evidence:

1. **The sparse points** (triangulated from several views): the rank correlation ``rho`` between the prior
   and the (inverse) depth of the points the view sees, and the robust affine fit of the prior onto them
   (:func:`s3dgs.alignment.anchored_fit`). ``rho < points_reject``, or no fit despite enough points, rejects
   the prior for the run; ``rho >= points_agree`` with a fit trusts it. The rest are ``pending``: too few
   points seen, a dataset without points, or a correlation in between (on real captures a poor network
   reaches 0.6-0.75 on some views while correct priors over noisy points stay near 0.5: the points alone
   cannot tell those apart).
2. **The render of a probe** (:meth:`s3dgs.trainer.Trainer.probe_priors`): a short photometric-only run from
   the sparse points. First it measures how far the points can be agreed with at all: the median rank
   correlation ``q`` between its rendered disparity and the points, over the views. Few or noisy points (a
   3-view capture triangulates a few hundred) keep even a reconstruction from the images themselves near 0.7;
   a dense capture's reaches 0.9 (``probe_reference``). So a pending prior that agrees with its points at least
   ``points_agree x min(1, q / probe_reference)`` is trusted: as well as the photometric reconstruction does,
   relative to the evidence. On a dense capture the bar stays ``points_agree``, and where the probe agrees with
   the points less than ``probe_least`` it tells nothing about them and the bar stays too. The other way round,
   a prior that agrees with its view's points worse than the probe's render does, by more than
   ``probe_margin``, is rejected: there the images alone give better geometry than the prior (a mediocre
   network on a dense capture). For the others, the rank
   correlation between the probe's rendered disparity and the prior, over the rendered surface, sets the weight
   (0 at ``render_reject``, 1 at ``render_agree``, linear between). The probe never saw the priors, so a prior
   cannot earn weight by having pulled the render towards itself.

A ``trusted`` prior (weight 1) also seeds points (the initialisation); a ``partial`` one only weights its
depth term. Both correlations are taken given the image layout (:func:`rank_correlation`): they ignore any
monotone map between prior and depth (the prior's unknown scale and shift, the curvature between depth and
inverse depth) and what the position in the image alone explains (nearer at the bottom), which any prior of
any scene would get right.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch

from s3dgs.alignment import MIN_POINTS, sample, seen_points
from s3dgs.data.scene import View

MAX_SAMPLES = 20000  # pixels a render agreement ranks (a regular subsample of the mask beyond this)
STATES = ("trusted", "partial", "pending", "rejected")


@dataclass
class Trust:
    """One view's verdict on its prior: ``weight`` in [0, 1] multiplies its depth term; ``state`` is ``trusted``
    (weight 1: it also seeds points), ``partial``, ``rejected`` or ``pending`` (until the render judges it);
    ``why`` says by what evidence."""

    weight: float
    state: str
    why: str  # the cause, without numbers (so views group by it); the numbers are the fields below
    points_seen: int = 0  # sparse points the view sees on valid prior pixels
    points_rho: float | None = None  # rank correlation with them, when there are enough
    render_rho: float | None = None  # rank correlation with the probe's render, when it judged the view

    def as_dict(self) -> dict[str, float | int | str | None]:
        """The verdict for metrics.json (correlations rounded to 4 digits)."""
        return {"weight": round(self.weight, 4), "state": self.state, "why": self.why, "points_seen": self.points_seen,
                "points_rho": None if self.points_rho is None else round(self.points_rho, 4),
                "render_rho": None if self.render_rho is None else round(self.render_rho, 4)}


def ranks(x: torch.Tensor) -> torch.Tensor:
    """Average ranks ``[m]`` (float64, 0-based) of 1-D values ``x [m]``; tied values share their mean rank."""
    x = x.detach().double()
    order = torch.argsort(x)
    r = torch.empty_like(x)
    r[order] = torch.arange(len(x), dtype=torch.float64, device=x.device)
    values, inverse = torch.unique(x, return_inverse=True)
    if len(values) < len(x):  # ties: the mean rank of each group of equal values
        sums = torch.zeros(len(values), dtype=torch.float64, device=x.device).index_add_(0, inverse, r)
        counts = torch.bincount(inverse, minlength=len(values)).double()
        r = (sums / counts)[inverse]
    return r


def rank_correlation(x: torch.Tensor, y: torch.Tensor, uv: torch.Tensor | None = None) -> float:
    """Spearman's rank correlation of 1-D values ``x, y [m]``; 0 when either is constant or ``m < 4``.

    With pixel coordinates ``uv [m, 2]``, the partial rank correlation given the image layout: each ranking's
    least-squares plane in ``(u, v)`` is removed first. Most views of most scenes are nearer at the bottom
    than at the top, so any prior of any scene correlates with any view's depth; what only a prior of *this*
    view can do is order the depths that the image position alone does not explain."""
    if len(x) < 4:
        return 0.0
    rx, ry = ranks(x), ranks(y)
    if uv is None:
        rx, ry = rx - rx.mean(), ry - ry.mean()
    else:
        uv = uv.double()
        basis = torch.cat([torch.ones_like(rx)[:, None], (uv - uv.mean(0)) / uv.std(0).clamp_min(1e-12)], 1)
        coef = torch.linalg.lstsq(basis, torch.stack([rx, ry], 1)).solution
        rx, ry = (torch.stack([rx, ry], 1) - basis @ coef).unbind(1)
    den = float(rx.norm() * ry.norm())
    return float((rx * ry).sum()) / den if den > 1e-9 * len(x) ** 2 else 0.0


def ramp(value: float, low: float, high: float) -> float:
    """0 at or below ``low``, 1 at or above ``high``, linear between."""
    return min(1.0, max(0.0, (value - low) / max(high - low, 1e-12)))


def is_flat(prior: torch.Tensor, valid: torch.Tensor) -> bool:
    """Whether the prior ``[H, W]`` takes (almost) one value over its ``valid [H, W]`` pixels (a constant map:
    nothing to learn from)."""
    p = prior[valid]
    return len(p) == 0 or float(p.max() - p.min()) <= 1e-6 * max(float(p.abs().max()), 1e-12)


def points_verdict(prior_values: torch.Tensor, target: torch.Tensor, uv: torch.Tensor, fitted: bool, min_points: int,
                   agree: float, reject: float, fit_problem: str | None = None) -> Trust:
    """The sparse points' verdict on one view's prior, from the prior's values ``[m]`` at the points it sees (at
    pixel coordinates ``uv [m, 2]``), their ``target [m]`` (the points' inverse depth for inverse-depth priors,
    depth for metric ones; compared by :func:`rank_correlation` given the image layout) and whether
    the robust anchor fit succeeded (``fit_problem``: why not). Fewer than ``min_points`` points, or a
    correlation between ``reject`` and ``agree``: ``pending`` (the render decides)."""
    m = len(prior_values)
    if m < min_points:
        return Trust(0.0, "pending", f"fewer than {min_points} sparse points seen", m)
    rho = rank_correlation(prior_values, target, uv)
    if rho < reject:
        return Trust(0.0, "rejected", f"rank agreement with the sparse points below {reject:g}", m, rho)
    if not fitted:
        return Trust(0.0, "rejected", f"no robust fit to the sparse points: {fit_problem}", m, rho)
    if rho >= agree:
        return Trust(1.0, "trusted", "agrees with the sparse points", m, rho)
    return Trust(0.0, "pending", f"rank agreement with the sparse points between {reject:g} and {agree:g}", m, rho)


def render_agreement(rendered: torch.Tensor, prior: torch.Tensor, mask: torch.Tensor) -> float:
    """:func:`rank_correlation` given the image layout of a rendered map and the prior (both ``[H, W]``, the
    prior's space) over ``mask [H, W]`` (a regular subsample of at most ``MAX_SAMPLES`` pixels); 0 over fewer
    than 16 pixels."""
    vu = mask.nonzero()
    if len(vu) < 16:
        return 0.0
    vu = vu[::-(-len(vu) // MAX_SAMPLES)]
    r, p = rendered.detach()[vu[:, 0], vu[:, 1]], prior[vu[:, 0], vu[:, 1]]
    return rank_correlation(r, p, vu.flip(1).to(r.dtype) + 0.5)


def render_verdict(trust: Trust, rho: float, reject: float, agree: float) -> Trust:
    """A ``pending`` view's verdict from ``rho``, its prior's rank agreement with the probe's render: the weight of
    the ramp from ``reject`` (0) to ``agree`` (1)."""
    weight = ramp(rho, reject, agree)
    if weight <= 0:
        state, why = "rejected", f"rank agreement with the render below {reject:g}"
    elif weight >= 1:
        state, why = "trusted", "agrees with the render"
    else:
        state, why = "partial", f"rank agreement with the render between {reject:g} and {agree:g}"
    return Trust(weight, state, why, trust.points_seen, trust.points_rho, rho)


def render_points_agreement(depth: torch.Tensor, z: torch.Tensor, uv: torch.Tensor) -> float:
    """:func:`rank_correlation` given the image layout between a rendered z-depth ``[H, W]``, sampled at the sparse
    points' pixels ``uv [m, 2]``, and the points' own depths ``z [m]`` (compared as disparities)."""
    rendered = sample(depth.detach(), uv).clamp_min(1e-12)
    return rank_correlation(1.0 / rendered, 1.0 / z, uv)


def median_agreement(qualities: list[float]) -> float | None:
    """The median of the probe's per-view agreements with the sparse points (None without any)."""
    return float(torch.tensor(qualities).median()) if qualities else None


def points_bar(q: float | None, agree: float, reference: float, least: float) -> float:
    """The points agreement that trusts a pending prior: ``agree x min(1, q / reference)`` with ``q`` the probe's
    :func:`median_agreement` with the sparse points; ``agree`` without it, or when ``q < least`` (a probe that
    barely agrees with the points tells nothing about them)."""
    return agree if q is None or q < least else agree * min(1.0, q / reference)


def points_reverdict(trust: Trust, bar: float, render_rho: float | None, margin: float) -> Trust | None:
    """A ``pending`` view's verdict by its sparse points once the probe has rendered it: rejected when the probe's
    render agrees with the points (``render_rho``) better than the prior does by more than ``margin`` (the images
    alone already give better geometry there: the prior could only pull it towards worse); trusted when the
    prior agrees at least ``bar`` (:func:`points_bar`); None when the points cannot decide (the render then
    does)."""
    rho = trust.points_rho
    if rho is None:
        return None
    if render_rho is not None and rho < render_rho - margin:
        return Trust(0.0, "rejected", "the probe's render agrees better with the sparse points", trust.points_seen,
                     rho)
    if rho < bar:
        return None
    return Trust(1.0, "trusted", "agrees with the sparse points as well as the probe's render", trust.points_seen,
                 rho)


def point_trusts(views: list[View], points: torch.Tensor, kind: str, fitted: set[str], problems: dict[str, str],
                 agree: float, reject: float) -> dict[str, Trust]:
    """Each view with a prior -> its :func:`points_verdict` (a constant prior is ``rejected`` outright; without
    sparse points every view is ``pending``). ``fitted``: the keys with a robust anchor fit; ``problems``: why
    the others have none. ``kind``: the prior's, which says whether it is compared with ``1/z`` or ``z``."""
    trust: dict[str, Trust] = {}
    for v in views:
        if v.prior is None:
            continue
        if is_flat(v.prior, v.prior_valid):
            trust[v.key] = Trust(0.0, "rejected", "the prior is constant")
        elif len(points) == 0:
            trust[v.key] = Trust(0.0, "pending", "the dataset has no sparse points")
        else:
            pv, z, uv = seen_points(v, points)
            target = 1.0 / z if kind == "inverse_depth" else z
            trust[v.key] = points_verdict(pv, target, uv, v.key in fitted, MIN_POINTS, agree, reject,
                                          problems.get(v.key))
    return trust


def state_counts(trust: dict[str, Trust]) -> dict[str, int]:
    """How many views are in each of :data:`STATES`."""
    states = Counter(t.state for t in trust.values())
    return {s: states[s] for s in STATES}


def mean_weight(trust: dict[str, Trust]) -> float:
    """The mean weight over the views with a prior (0 without any)."""
    return sum(t.weight for t in trust.values()) / max(len(trust), 1)


def summary(trust: dict[str, Trust]) -> str:
    """One line: how many views are in each state, the rejected ones' causes with their counts, the mean weight."""
    parts = [f"{n} {s}" for s, n in state_counts(trust).items() if n]
    causes = Counter(t.why for t in trust.values() if t.state == "rejected")
    line = f"{', '.join(parts)} of {len(trust)} views with a prior"
    if causes:
        line += " (rejected: " + "; ".join(f"{n} {c}" for c, n in causes.most_common()) + ")"
    return f"{line}; mean weight {mean_weight(trust):.2f}"



def report(trust: dict[str, Trust]) -> dict[str, Any]:
    """The verdicts for ``metrics.json``: views per state, the mean weight (over views with a prior), the one-line
    :func:`summary` and each view's :meth:`Trust.as_dict`; empty when nothing judged them."""
    if not trust:
        return {}
    return ({f"views_{s}": n for s, n in state_counts(trust).items()}
            | {"mean_weight": round(mean_weight(trust), 4), "summary": summary(trust),
               "views": {k: t.as_dict() for k, t in trust.items()}})
