"""Draw Gaussians from a camera: the one call of the rasterizer that training, evaluation, TensorBoard, the camera
path and the viewer share.

Parameters are gsplat's (:mod:`s3dgs.gaussians`: log scales, logit opacities, SH coefficients); this module applies
the activations and asks :func:`s3dgs.render.rasterization` for colour and expected z-depth in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from omegaconf import DictConfig

from s3dgs.data.scene import View
from s3dgs.gaussians import sh_degree_of
from s3dgs.render import rasterization

Params = Mapping[str, torch.Tensor]  # gsplat's names: means, scales, quats, opacities, sh0, shN


@dataclass(frozen=True)
class RenderOptions:
    """How a run rasterizes (``near_plane``, ``far_plane``, ``packed``, ``backend`` in ``configs/train.yaml``);
    ``absgrad``: also accumulate the absolute 2D-mean gradients a densification strategy may ask for."""

    near_plane: float = 0.01
    far_plane: float = 1e10
    packed: bool = False
    backend: str = "auto"
    absgrad: bool = False

    @classmethod
    def of(cls, cfg: DictConfig, absgrad: bool = False) -> RenderOptions:
        """The options of a run's config ``cfg``."""
        return cls(cfg.near_plane, cfg.far_plane, cfg.packed, cfg.backend, absgrad)


def rasterize(params: Params, viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int,
              sh_degree: int | None = None, options: RenderOptions = RenderOptions(),
              background: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
    """``params`` seen by one camera, world-to-camera ``viewmat [1, 4, 4]`` and intrinsics ``K [1, 3, 3]`` (any
    device: moved to the Gaussians'), at ``width`` x ``height`` pixels, with SH up to ``sh_degree`` (default: all
    the parameters hold), on ``background [3]`` (default: none, i.e. black). Returns RGB ``[1, H, W, 3]``, expected
    z-depth ``[1, H, W]`` (scene units), alpha ``[1, H, W]`` and the rasterizer's info (for densification)."""
    dev = params["means"].device
    out, alphas, info = rasterization(
        params["means"], params["quats"], torch.exp(params["scales"]), torch.sigmoid(params["opacities"]),
        torch.cat([params["sh0"], params["shN"]], 1), viewmat.to(dev), K.to(dev), width, height,
        near_plane=options.near_plane, far_plane=options.far_plane,
        sh_degree=sh_degree_of(params["shN"]) if sh_degree is None else sh_degree, packed=options.packed,
        backgrounds=None if background is None else background[None], render_mode="RGB+ED",
        absgrad=options.absgrad, backend=options.backend)
    return out[..., :3], out[..., 3], alphas[..., 0], info


def render(params: Params, view: View, sh_degree: int | None = None, options: RenderOptions = RenderOptions(),
           background: torch.Tensor | None = None
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
    """:func:`rasterize` from ``view``'s camera at its size: RGB ``[1, H, W, 3]``, z-depth ``[1, H, W]``, alpha
    ``[1, H, W]``, info."""
    return rasterize(params, torch.linalg.inv(view.camtoworld)[None], view.K[None], view.width, view.height,
                     sh_degree, options, background)
