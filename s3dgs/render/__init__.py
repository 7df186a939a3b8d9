"""Differentiable Gaussian rasterization with gsplat's interface: gsplat on CUDA, our numba kernels on CPU."""

from .rasterization import rasterization

__all__ = ["rasterization"]
