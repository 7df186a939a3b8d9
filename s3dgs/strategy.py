"""Densification strategies: gsplat's, made to hold on CPU budgets.

- :class:`BudgetDefaultStrategy`: gsplat's ``DefaultStrategy`` (clone / split / prune) with the periodic
  opacity reset that gsplat 1.5.3 skips (``step % reset_every == 0 & step > 0`` parses as
  ``step % reset_every == (0 & step) > 0``, always false) and a Gaussian budget ``cap_max``: after a
  refinement that overshoots it, the least opaque Gaussians are pruned back to the budget, so the step time
  stays bounded.
- :class:`CPUMCMCStrategy`: gsplat's ``MCMCStrategy`` (3DGS as Markov chain Monte Carlo: dead Gaussians are
  relocated onto live ones, growth per refinement up to ``cap_max``, scaled so short runs reach it at the same
  share of the run as gsplat's 5% over 30 000 steps) with its two CUDA-only pieces,
  the relocation formula and the covariance of the position noise, computed in PyTorch on CPU tensors.

Step fields are written for a 30 000-step run and scaled by :func:`make_strategy` to the run's length.
"""

from __future__ import annotations

from typing import Any

import torch
from gsplat import quat_scale_to_covar_preci
from gsplat.cuda._torch_impl import _quat_scale_to_covar_preci
from gsplat.relocation import compute_relocation
from gsplat.strategy import DefaultStrategy, MCMCStrategy
from gsplat.strategy import ops as gsplat_ops
from omegaconf import DictConfig, OmegaConf

from s3dgs.errors import TrainError

REFERENCE_STEPS = 30000  # strategy and SH schedules in the configs are written for a run of this length
STEP_FIELDS = ("refine_start_iter", "refine_stop_iter", "reset_every", "refine_every", "refine_scale2d_stop_iter")
MIN_REFINE_EVERY = 25  # densify no more often: gradient statistics must average over several views
MIN_RESET_EVERY = 100  # reset opacities no more often: they need this many steps to be learnt again
# cap_max=auto: gsplat's MCMC default on CUDA; on CPU the count that kept a 200x200 lego step near 0.2-0.3 s
AUTO_CAP_MAX = {"cuda": 1_000_000, "cpu": 50_000}


def scaled_steps(n: int, steps: int) -> int:
    """A step count written for a ``REFERENCE_STEPS`` run, scaled to a run of ``steps`` (at least 1 if ``n`` > 0)."""
    return 0 if n <= 0 else max(1, round(n * steps / REFERENCE_STEPS))


def relocation_torch(opacities: torch.Tensor, scales: torch.Tensor, ratios: torch.Tensor, binoms: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Equation 9 of "3D Gaussian Splatting as Markov Chain Monte Carlo" (gsplat's ``relocation`` kernel):
    a Gaussian of opacity ``o`` ``[N]`` and scales ``[N, 3]`` split into ``n`` = ``ratios [N]`` copies gets
    opacity ``1 - (1 - o)^(1/n)`` and scales ``o / sum_{i<=n} sum_{k<i} C(i-1, k) (-1)^k o'^(k+1) / sqrt(k+1)``
    times the old ones. ``binoms [n_max, n_max]`` holds ``C(n, k)``. Computed in float64 (the alternating
    sum cancels)."""
    n_max = binoms.shape[0]
    n = ratios.clamp(1, n_max).long()
    o = opacities.double()
    new_o = 1.0 - (1.0 - o) ** (1.0 / n.double())
    k = torch.arange(n_max, dtype=torch.float64)
    # coeff[m, k] = sum_{i=k+1}^{m} C(i-1, k) (-1)^k / sqrt(k+1): the double sum regrouped by power of o'
    terms = binoms.double() * ((-1.0) ** k / torch.sqrt(k + 1))  # [i-1, k]
    coeff = torch.cat([torch.zeros(1, n_max, dtype=torch.float64), terms.cumsum(0)])  # [m = 0..n_max, k]
    powers = new_o[:, None] ** (k + 1)  # [N, n_max]
    denom = (coeff[n] * powers).sum(1)
    return new_o.to(opacities), (o / denom).to(scales)[:, None] * scales


def _relocation(opacities, scales, ratios, binoms):
    if opacities.is_cuda:
        return compute_relocation(opacities, scales, ratios, binoms)
    return relocation_torch(opacities, scales, ratios, binoms)


def _covar_preci(quats, scales, compute_covar=True, compute_preci=True, triu=False):
    impl = quat_scale_to_covar_preci if quats.is_cuda else _quat_scale_to_covar_preci
    return impl(quats, scales, compute_covar=compute_covar, compute_preci=compute_preci, triu=triu)


# gsplat.strategy.ops looks both names up at call time: route CPU tensors to the PyTorch versions.
gsplat_ops.compute_relocation = _relocation
gsplat_ops.quat_scale_to_covar_preci = _covar_preci


class BudgetDefaultStrategy(DefaultStrategy):
    """``DefaultStrategy`` with its opacity reset done on schedule and at most ``cap_max`` Gaussians."""

    def __init__(self, cap_max: int = 0, **fields: Any):
        super().__init__(**fields)
        self.cap_max = cap_max

    def step_post_backward(self, params, optimizers, state, step, info, packed=False):
        super().step_post_backward(params, optimizers, state, step, info, packed=packed)
        if step >= self.refine_stop_iter:
            return
        if step > self.refine_start_iter and step % self.refine_every == 0 and self.cap_max:
            self._prune_to_budget(params, optimizers, state)
        if step > 0 and step % self.reset_every == 0:  # idempotent if gsplat already reset
            gsplat_ops.reset_opa(params=params, optimizers=optimizers, state=state, value=self.prune_opa * 2.0)

    @torch.no_grad()
    def _prune_to_budget(self, params, optimizers, state) -> None:
        excess = len(params["means"]) - self.cap_max
        if excess > 0:
            drop = torch.zeros(len(params["means"]), dtype=torch.bool, device=params["means"].device)
            drop[params["opacities"].flatten().topk(excess, largest=False).indices] = True
            gsplat_ops.remove(params=params, optimizers=optimizers, state=state, mask=drop)


class CPUMCMCStrategy(MCMCStrategy):
    """``MCMCStrategy`` that also runs on CPU (the relocation formula above) and grows by ``growth`` per
    refinement (gsplat: 1.05); ``opacity_reg`` and ``scale_reg`` are the regularisers MCMC is meant to train
    with (the trainer adds them to the loss)."""

    def __init__(self, opacity_reg: float = 0.01, scale_reg: float = 0.01, growth: float = 1.05, **fields: Any):
        super().__init__(**fields)
        self.opacity_reg, self.scale_reg, self.growth = opacity_reg, scale_reg, growth

    @torch.no_grad()
    def _add_new_gs(self, params, optimizers, binoms) -> int:
        n = len(params["means"])
        target = int(self.growth * n)
        n_new = max(0, (min(self.cap_max, target) if self.cap_max else target) - n)  # cap_max 0: no budget
        if n_new:
            gsplat_ops.sample_add(params=params, optimizers=optimizers, state={}, n=n_new, binoms=binoms,
                                  min_opacity=self.min_opacity)
        return n_new


def refinements(cfg: dict) -> float:
    """How many refinements a schedule ``{refine_start_iter, refine_stop_iter, refine_every}`` makes."""
    return max(1.0, (cfg["refine_stop_iter"] - cfg["refine_start_iter"]) / cfg["refine_every"])


Strategy = BudgetDefaultStrategy | CPUMCMCStrategy


def gaussian_budget(cap_max: int | str, pixels_per_gaussian: float, train_pixels: int, device: torch.device) -> int:
    """The smaller of ``cap_max`` and one Gaussian per ``pixels_per_gaussian`` training pixels (either 0 = no such
    limit; 0 = no budget): the model grows with the evidence it is fitted to, so few or small views do not grow
    a cloud of floaters, and the step time stays bounded. ``cap_max="auto"``: :data:`AUTO_CAP_MAX` for the device."""
    if cap_max == "auto":
        cap_max = AUTO_CAP_MAX["cuda" if device.type == "cuda" else "cpu"]
    elif not isinstance(cap_max, int) or cap_max < 0:
        raise TrainError(f"strategy.cap_max={cap_max!r}: use auto, 0 (no cap) or a positive number of Gaussians")
    limits = [cap_max, int(train_pixels / pixels_per_gaussian) if pixels_per_gaussian > 0 else 0]
    return min((x for x in limits if x > 0), default=0)


def make_strategy(cfg: DictConfig, steps: int, train_pixels: int, device: torch.device) -> Strategy:
    """Strategy from the ``strategy`` config group, its step fields scaled to ``steps`` and its Gaussian budget
    to ``train_pixels`` (the number of training pixels, all views) and ``device``."""
    fields = OmegaConf.to_container(cfg, resolve=True)
    reference = dict(fields)
    name = fields.pop("name")
    fields["cap_max"] = gaussian_budget(fields["cap_max"], fields.pop("pixels_per_gaussian", 0), train_pixels,
                                       device)
    for key in STEP_FIELDS:
        if key in fields:
            fields[key] = scaled_steps(fields[key], steps)
    if "refine_every" in fields:
        fields["refine_every"] = max(fields["refine_every"], MIN_REFINE_EVERY)
    if "reset_every" in fields:
        fields["reset_every"] = max(fields["reset_every"], MIN_RESET_EVERY)
    if name == "default":
        return BudgetDefaultStrategy(**fields)
    if name == "mcmc":
        # gsplat grows 5% per refinement over a 30000-step schedule; a shorter run makes fewer refinements
        # (refine_every has a floor), so each grows more: the budget is reached at the same share of the run.
        growth = 1.05 ** (refinements(reference) / refinements(fields))
        return CPUMCMCStrategy(growth=growth, **fields)
    raise TrainError(f"strategy.name={name!r}: use default or mcmc")
