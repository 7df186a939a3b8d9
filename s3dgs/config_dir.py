"""Where ``s3dgs.train`` finds its Hydra configs: the checkout's top-level ``configs/`` folder, which an
installed wheel (or an editable install) carries as the package ``s3dgs.configs``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

CHECKOUT_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def config_path() -> str:
    """``pkg://s3dgs.configs`` when that package is installed, else the checkout's ``configs/`` (run from a
    source tree with ``PYTHONPATH``, without installing)."""
    if importlib.util.find_spec("s3dgs.configs") is not None:
        return "pkg://s3dgs.configs"
    return str(CHECKOUT_CONFIGS)
