"""Depth priors for 3DGS: 16-bit depth PNGs from Depth Anything V2, its Space, Video Depth Anything, or depth files
made elsewhere.

``from preprocess import generate_depth`` gives the callable module :mod:`preprocess.generate_depth`
(``generate_depth(images_dir, output_dir, ...)`` runs it), ``from preprocess import import_depth`` likewise
:mod:`preprocess.import_depth` (``import_depth(src_dir, output_dir, kind="depth", ...)``); imported lazily so that
``python -m preprocess.<name>`` runs the module only once.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["generate_depth", "import_depth"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return importlib.import_module(f"preprocess.{name}")
    raise AttributeError(f"module 'preprocess' has no attribute {name!r}")
