"""gsplat's two densification strategies (:mod:`s3dgs.strategy`) behind one signature, so the training loop never
asks which one it has: their state, the calls around the backward pass (``DefaultStrategy`` wants ``packed``,
``MCMCStrategy`` the means' learning rate) and the loss terms a strategy is meant to train with."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from omegaconf import DictConfig

from s3dgs.strategy import BudgetDefaultStrategy, CPUMCMCStrategy, Strategy, make_strategy

Params = torch.nn.ParameterDict
Optimizers = dict[str, torch.optim.Adam]


class Densification(ABC):
    """One gsplat strategy: :meth:`initial_state` once, then each step :meth:`before_backward`, the loss (plus
    :meth:`regulariser`), backward, :meth:`after_backward`."""

    def __init__(self, strategy: Strategy):
        self.strategy = strategy

    @property
    def absgrad(self) -> bool:
        """Whether the rasterizer must accumulate absolute 2D-mean gradients for it."""
        return getattr(self.strategy, "absgrad", False)

    def initial_state(self, params: Params, optimizers: Optimizers, scene_scale: float) -> dict[str, Any]:
        """The strategy's state for new ``params`` (checked against its needs) in a scene of extent ``scene_scale``."""
        self.strategy.check_sanity(params, optimizers)
        return self.new_state(scene_scale)

    @abstractmethod
    def new_state(self, scene_scale: float) -> dict[str, Any]:
        """gsplat's ``initialize_state`` with what this strategy takes."""

    def before_backward(self, params: Params, optimizers: Optimizers, state: dict[str, Any], step: int,
                        info: dict[str, Any]) -> None:
        """gsplat's ``step_pre_backward`` (keeps the 2D means' gradients for :meth:`after_backward`)."""
        self.strategy.step_pre_backward(params, optimizers, state, step, info)

    @abstractmethod
    def after_backward(self, params: Params, optimizers: Optimizers, state: dict[str, Any], step: int,
                       info: dict[str, Any], means_lr: float, packed: bool) -> None:
        """gsplat's ``step_post_backward``: grow, prune or relocate Gaussians (``means_lr``: the means' learning
        rate this step; ``packed``: the rasterizer's layout)."""

    def regulariser(self, params: Params) -> torch.Tensor | float:
        """Loss terms the strategy trains with (none here)."""
        return 0.0


class DefaultDensification(Densification):
    """:class:`~s3dgs.strategy.BudgetDefaultStrategy`: clone, split, prune, opacity reset."""

    strategy: BudgetDefaultStrategy

    def new_state(self, scene_scale: float) -> dict[str, Any]:
        return self.strategy.initialize_state(scene_scale=scene_scale)

    def after_backward(self, params: Params, optimizers: Optimizers, state: dict[str, Any], step: int,
                       info: dict[str, Any], means_lr: float, packed: bool) -> None:
        self.strategy.step_post_backward(params, optimizers, state, step, info, packed=packed)


class MCMCDensification(Densification):
    """:class:`~s3dgs.strategy.CPUMCMCStrategy`: relocation, growth to the budget, position noise."""

    strategy: CPUMCMCStrategy

    def new_state(self, scene_scale: float) -> dict[str, Any]:
        return self.strategy.initialize_state()

    def after_backward(self, params: Params, optimizers: Optimizers, state: dict[str, Any], step: int,
                       info: dict[str, Any], means_lr: float, packed: bool) -> None:
        self.strategy.step_post_backward(params, optimizers, state, step, info, lr=means_lr)

    def regulariser(self, params: Params) -> torch.Tensor:
        """``opacity_reg x mean(opacity) + scale_reg x mean(scale)``, as gsplat trains MCMC."""
        return (self.strategy.opacity_reg * torch.sigmoid(params["opacities"]).mean()
                + self.strategy.scale_reg * torch.exp(params["scales"]).mean())


KINDS: dict[str, type[Densification]] = {"default": DefaultDensification, "mcmc": MCMCDensification}


def make_densification(cfg: DictConfig, steps: int, train_pixels: int, device: torch.device) -> Densification:
    """The ``strategy`` config group's strategy (:func:`~s3dgs.strategy.make_strategy`: scaled to ``steps`` and
    budgeted for ``train_pixels`` on ``device``) behind its adapter."""
    strategy = make_strategy(cfg, steps, train_pixels, device)  # checks strategy.name
    return KINDS[cfg.name](strategy)
