"""The one device resolver of both packages: ``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda`` or
``cuda:N`` to a ``torch.device``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from preprocess.errors import S3dgsError

if TYPE_CHECKING:
    import torch


class DeviceError(S3dgsError, ValueError):
    """A device name that is unknown, or CUDA asked for where torch sees none."""


def pick_device(name: str | None = None) -> torch.device:
    """The device ``name`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``; None: ``auto``); :class:`DeviceError` for an
    unknown name or CUDA without a CUDA GPU. Imports torch only when called."""
    import torch

    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.split(":")[0] not in ("cpu", "cuda"):
        raise DeviceError(f"device {name!r}: use auto, cpu, cuda or cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device {name}: torch {torch.__version__} sees no CUDA GPU; use cpu (or auto), or install "
                          "the CUDA build of torch")
    return torch.device(name)
