"""Where model weights come from and where they are kept: the one table of every model we can download.

Two kinds of entries:

* ``transformers`` models (Depth Anything V2, relative and metric) are Hugging Face repos that
  ``from_pretrained`` loads; they are downloaded into the Hugging Face cache (``HF_HOME``), where
  ``--model <repo id>`` finds them offline afterwards.
* ``checkpoint`` files (Video Depth Anything ``.pth``) are stored flat as ``<root>/<name>.pth``;
  the root is ``--dest``, else ``$S3DGS_CHECKPOINT_ROOT``, else ``~/.cache/s3dgs/checkpoints``
  (under ``$XDG_CACHE_HOME`` when set). :func:`checkpoint_path` finds them for the video backend.

Tokens: ``HF_TOKEN``, then ``HF_HUB_TOKEN``, then the stored ``hf auth login``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from preprocess.errors import S3dgsError

CHECKPOINT_ROOT_ENV = "S3DGS_CHECKPOINT_ROOT"


class WeightsError(S3dgsError, RuntimeError):
    """A model name, file or download problem; one line naming the file and the fix."""


@dataclass(frozen=True)
class ModelEntry:
    """One downloadable model. ``filename`` is set for checkpoint files, ``None`` for whole transformers repos."""

    name: str
    aliases: tuple[str, ...]
    repo: str
    filename: str | None
    metric: bool
    description: str

    @property
    def kind(self) -> str:
        return "transformers" if self.filename is None else "checkpoint"


def _da2(size: str, variant: str = "") -> ModelEntry:
    metric = bool(variant)
    name = f"da2-{variant.lower()}-{size.lower()}" if metric else f"da2-{size.lower()}"
    repo = f"depth-anything/Depth-Anything-V2-{'Metric-' + variant + '-' if metric else ''}{size}-hf"
    what = f"metric depth (m), {variant.lower()} scenes" if metric else "relative inverse depth"
    aliases = (f"da2-metric-{variant.lower()}-{size.lower()}",) if metric else (f"depth-anything-v2-{size.lower()}",)
    return ModelEntry(name, aliases, repo, None, metric, f"Depth Anything V2 {size}, {what} (transformers)")


def _vda(encoder: str, metric: bool) -> ModelEntry:
    size = {"vits": "Small", "vitb": "Base", "vitl": "Large"}[encoder]
    prefix = "metric_" if metric else ""
    name = f"{prefix}video_depth_anything_{encoder}"
    repo = f"depth-anything/{'Metric-' if metric else ''}Video-Depth-Anything-{size}"
    what = "metric depth (m)" if metric else "relative inverse depth"
    return ModelEntry(name, (f"{prefix}{encoder}",), repo, f"{name}.pth", metric,
                      f"Video Depth Anything {size}, {what} (checkpoint)")


#: Every model ``download_weights`` knows. The video backend resolves its checkpoints here.
MODELS: tuple[ModelEntry, ...] = (
    *(_da2(size) for size in ("Small", "Base", "Large")),
    *(_da2(size, variant) for variant in ("Indoor", "Outdoor") for size in ("Small", "Base", "Large")),
    *(_vda(enc, metric) for metric in (False, True) for enc in ("vits", "vitb", "vitl")),
)


def resolve(name: str) -> ModelEntry:
    """Find a model by name, alias or repo id (case-insensitive)."""
    key = name.strip().lower()
    for entry in MODELS:
        if key in (entry.name, entry.repo.lower(), *entry.aliases):
            return entry
    raise WeightsError(f"unknown model {name!r}; list the known ones with: "
                       "python -m preprocess.download_weights --list")


def resolve_root(root: str | os.PathLike | None = None) -> Path:
    """``root`` if given, else ``$S3DGS_CHECKPOINT_ROOT``, else ``<user cache>/s3dgs/checkpoints``."""
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get(CHECKPOINT_ROOT_ENV):
        return Path(os.environ[CHECKPOINT_ROOT_ENV]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "s3dgs" / "checkpoints"


def hf_token() -> str | None:
    """``HF_TOKEN`` or ``HF_HUB_TOKEN``; ``None`` lets huggingface_hub use a stored login."""
    return os.environ.get("HF_TOKEN") or os.environ.get("HF_HUB_TOKEN") or None


def _download_command(entry: ModelEntry, root: Path | None = None) -> str:
    dest = f" --dest {root}" if root is not None and root != resolve_root() else ""
    return f"python -m preprocess.download_weights --model {entry.aliases[0] if entry.filename else entry.name}{dest}"


def download_hint(model: str) -> str:
    """The command that downloads ``model`` (a known name or any hub id)."""
    try:
        return _download_command(resolve(model))
    except WeightsError:
        return f"hf download {model}"


def checkpoint_path(name: str, checkpoint_root: str | os.PathLike | None = None) -> Path:
    """Path of checkpoint ``name`` (e.g. ``vitl``, ``metric_video_depth_anything_vits``): ``<root>/<name>.pth``.

    Raises :class:`WeightsError` naming the missing file and the exact download command.
    """
    entry = resolve(name)
    if entry.filename is None:
        raise WeightsError(f"{entry.name} is a transformers model, not a checkpoint file; pass --model {entry.repo}")
    root = resolve_root(checkpoint_root)
    path = root / f"{entry.name}.pth"
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint {entry.name} not found; download it with: "
                           f"{_download_command(entry, root)}")
    return path


def is_downloaded(entry: ModelEntry, root: str | os.PathLike | None = None) -> bool:
    """True if the checkpoint file exists under ``root``, or the repo's config is in the Hugging Face cache."""
    if entry.filename is not None:
        return (resolve_root(root) / f"{entry.name}.pth").is_file()
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(entry.repo, "config.json"), str)


def download(entry: ModelEntry, root: str | os.PathLike | None = None) -> Path:
    """Fetch ``entry`` if it is not there yet; return the checkpoint file or the cached repo folder."""
    from huggingface_hub import hf_hub_download, snapshot_download

    token = hf_token()
    try:
        if entry.filename is not None:
            dest = resolve_root(root)
            path = dest / f"{entry.name}.pth"
            if path.is_file():
                return path
            dest.mkdir(parents=True, exist_ok=True)
            return Path(hf_hub_download(entry.repo, entry.filename, local_dir=dest, token=token))
        return Path(snapshot_download(entry.repo, allow_patterns=["*.json", "*.safetensors"], token=token))
    except Exception as e:  # huggingface_hub raises many types (offline, HTTP, gated, disk); all end here
        what = entry.filename or "model files"
        if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("", "0", "false", "no"):
            raise WeightsError(f"failed to download {what} from {entry.repo}: HF_HUB_OFFLINE is set; "
                               "unset it on a machine with internet and rerun") from None
        reason = (str(e).strip().split(". ") or [""])[0].splitlines()[0][:160] if str(e).strip() else ""
        raise WeightsError(f"failed to download {what} from {entry.repo} ({e.__class__.__name__}: {reason}); "
                           "check the internet connection, and HF_TOKEN for gated repos") from None
