"""The depth losses, one :class:`~s3dgs.depth_terms.base.DepthTerm` per module, chosen by ``depth_loss.name``.

A term is prepared once from the scene and its priors (alignments to the sparse points), gives a loss per step and
a report for ``metrics.json``. ``depth_loss=<name>`` (``configs/depth_loss/<name>.yaml``) picks the module
``s3dgs.depth_terms.<name>`` and builds the :class:`DepthTerm` it defines: adding a depth loss is one module here and one config
file there.
"""

from __future__ import annotations

import importlib
import pkgutil

from omegaconf import DictConfig

from s3dgs.depth_terms.base import DepthTerm
from s3dgs.errors import TrainError

NOT_TERMS = {"base"}  # modules of this package that are not a depth loss


def term_names() -> list[str]:
    """The depth losses there are: this package's modules but :data:`NOT_TERMS`, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in NOT_TERMS)


def make_depth_term(cfg: DictConfig) -> DepthTerm:
    """The depth term of the ``depth_loss`` config group ``cfg`` (``cfg.name``: a module of this package)."""
    names = term_names()
    if cfg.name not in names:
        raise TrainError(f"depth_loss.name={cfg.name!r}: use {', '.join(names[:-1])} or {names[-1]}")
    module = importlib.import_module(f"{__name__}.{cfg.name}")
    (term,) = (c for c in vars(module).values()
               if isinstance(c, type) and issubclass(c, DepthTerm) and c.__module__ == module.__name__)
    return term(cfg)
