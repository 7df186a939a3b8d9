"""Depth priors for 3DGS: 16-bit depth PNGs from Depth Anything V2, its Space, and Video Depth Anything.

``from preprocess import generate_depth`` gives the callable module :mod:`preprocess.generate_depth`
(``generate_depth(images_dir, output_dir, ...)`` runs it); imported lazily so that
``python -m preprocess.generate_depth`` runs the module only once.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["generate_depth"]


def __getattr__(name: str) -> Any:
    if name == "generate_depth":
        return importlib.import_module("preprocess.generate_depth")
    raise AttributeError(f"module 'preprocess' has no attribute {name!r}")
