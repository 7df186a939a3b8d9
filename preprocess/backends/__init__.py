"""Depth backends: the one interface every depth model plugs into.

A backend turns an **ordered list of image paths** into float depth maps, one
:class:`DepthResult` per path, in order::

    with make_backend("transformers", BackendOptions(model=..., device="cpu")) as backend:
        for result in backend.predict(paths):      # paths: list[Path], sorted by name
            result.depth                           # float32 [H, W], H x W = stored pixels (EXIF ignored)

It declares what its numbers are, before :meth:`DepthBackend.open` is called where possible:

* ``name``: the ``--backend`` value (``space``, ``transformers``, ``vda`` ...);
* ``model``: what made the numbers (hub id, local folder, Space id), recorded in depth_meta.json;
* ``kind`` / ``units``: ``"inverse_depth"`` (relative, larger = nearer, ``units=None``) or ``"depth"``
  (metric, ``units="m"``); may be settled by :meth:`open` (e.g. read from a model config);
* ``normalization``: ``"per_image"`` (each map is rescaled to the full 16-bit range on its own) or
  ``"per_sequence"`` (the list is one sequence: each result carries ``value_range``, the one min/max
  shared by the whole sequence; the driver then always passes the full list, never a shard or a
  resumed remainder, so every frame shares the same range).

A backend sees the whole ordered list, so a video model can read it in overlapping windows; it
must still yield exactly one result per path, in order. One image that fails is a result with
``error`` set (the run goes on); a problem that makes every image fail raises :class:`BackendError`
(one line, says how to fix it); a problem that makes the run stop but can be resumed later (a
quota) raises :class:`RunStopped`. ``calls`` counts model invocations (tests check a finished folder
costs none). Backends load images with :func:`preprocess.images.load_rgb`.

To add a backend: subclass :class:`DepthBackend`, add it to :data:`BACKENDS`, and add any option it
needs to :class:`BackendOptions`.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from preprocess.errors import S3dgsError

DEFAULT_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"
DEFAULT_SPACE = "depth-anything/Depth-Anything-V2"

#: ``--backend`` value -> "module:class", imported only when chosen (the Space needs no torch).
BACKENDS: dict[str, str] = {
    "transformers": "preprocess.backends.hf_transformers:TransformersBackend",
    "space": "preprocess.backends.space:SpaceBackend",
    "vda": "preprocess.backends.vda:VDABackend",
}


class BackendError(S3dgsError, RuntimeError):
    """The backend cannot run at all (unreachable, weights missing, API changed); one line with the fix."""


class RunStopped(S3dgsError, RuntimeError):
    """Stop the run now, keeping what is done (e.g. a quota ran out); the message says when/how to resume."""


@dataclass
class BackendOptions:
    """Everything a backend may be configured with; each backend reads the fields it needs."""

    model: str = DEFAULT_MODEL          # transformers: hub id or local folder
    device: str = "auto"                # auto | cpu | cuda
    batch_size: int = 1
    space: str = DEFAULT_SPACE          # space: Space id or URL
    hf_token: str | None = None         # sent only when given (or HF_TOKEN set for a Space id)
    checkpoint_root: str | None = None  # vda: folder of the .pth checkpoints (default: preprocess.weights)
    input_size: int = 518               # vda: short side of the network input
    fp32: bool = False                  # vda: no fp16 autocast on CUDA
    work_dir: Path | None = None        # resumable intermediate files (the output folder)
    prompt_depth: Path | None = None    # transformers: folder of prompt depth maps (Prompt Depth Anything)
    prompt_files: dict[Path, Path] = field(default_factory=dict)  # transformers: image -> its prompt depth file
    prompt_scale: float = 1e-3          # transformers: prompt value x prompt_scale = metres
    quiet: bool = False                 # no progress bars of the backend's own


@dataclass
class DepthResult:
    """One image's prediction.

    ``depth``: float32 ``[H, W]`` in the model's units, ``None`` when ``error`` is set.
    ``value_range``: ``(min, max)`` to quantise with (per-sequence backends); ``None`` = the map's own.
    ``info``: extra fields stored in this image's depth_meta.json entry; an ``info["warning"]`` is also shown.
    """

    path: Path
    depth: np.ndarray | None
    error: str | None = None
    value_range: tuple[float, float] | None = None
    info: dict[str, Any] = field(default_factory=dict)


class DepthBackend(ABC):
    """Base class: see the module docstring for the contract."""

    name: ClassVar[str]
    normalization: ClassVar[str] = "per_image"

    def __init__(self, model: str) -> None:
        self.model = model
        self.kind = "inverse_depth"
        self.units: str | None = None
        self.calls = 0

    @classmethod
    @abstractmethod
    def from_options(cls, options: BackendOptions) -> "DepthBackend":
        """Build the backend from the CLI/API options."""

    @property
    def extra(self) -> dict[str, Any]:
        """Backend details recorded in depth_meta.json's ``extra``."""
        return {"normalization": self.normalization}

    def open(self) -> None:
        """Connect / load weights. Raises :class:`BackendError`."""

    def close(self) -> None:
        """Release connections, memory and temp files."""

    @abstractmethod
    def predict(self, paths: Sequence[Path]) -> Iterator[DepthResult]:
        """Yield one :class:`DepthResult` per path, in order."""

    def __enter__(self) -> "DepthBackend":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_backend(name: str, options: BackendOptions) -> DepthBackend:
    """Instantiate the backend registered as ``name`` (not opened yet)."""
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls).from_options(options)
