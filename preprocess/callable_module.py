"""Modules that are also their main function: ``from preprocess import generate_depth`` gives the module
:mod:`preprocess.generate_depth`, and ``generate_depth(images_dir, output_dir, ...)`` calls its function of the
same name."""

from __future__ import annotations

import sys
import types
from typing import Any


class CallableModule(types.ModuleType):
    """A module that, called, calls its function named like the module's last dotted part."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, self.__name__.rpartition(".")[2])(*args, **kwargs)


def make_callable(module_name: str) -> None:
    """Make the imported module ``module_name`` a :class:`CallableModule`."""
    sys.modules[module_name].__class__ = CallableModule
