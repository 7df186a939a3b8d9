"""Differentiable Gaussian rasterization with gsplat's interface: gsplat on CUDA, our numba kernels on CPU."""

import re
from importlib.metadata import PackageNotFoundError, version

GSPLAT_MIN = (1, 5)  # gsplat 1.5 made radii [..., 2]: our CPU path emits that, gsplat's strategies expect it


def _require_gsplat() -> None:
    """Refuse, at import, a gsplat older than ``GSPLAT_MIN`` with one line saying how to fix it."""
    try:
        found = version("gsplat")
    except PackageNotFoundError:
        return  # the CPU rasterizer needs no gsplat; backend="gsplat" then fails on its import
    major_minor = tuple(int(v) for v in re.findall(r"\d+", found)[:2])
    if major_minor < GSPLAT_MIN:
        need = ".".join(map(str, GSPLAT_MIN))
        raise ImportError(f"s3dgs needs gsplat>={need} (radii are [..., 2] since {need}), found gsplat {found}: "
                          f"pip install 'gsplat>={need}'")


_require_gsplat()

from .rendering import rasterization  # noqa: E402

__all__ = ["rasterization"]
