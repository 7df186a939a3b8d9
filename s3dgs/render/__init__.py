"""Differentiable Gaussian rasterization with gsplat's interface: gsplat on CUDA, our numba kernels on CPU."""

from .rendering import rasterization

__all__ = ["rasterization"]
