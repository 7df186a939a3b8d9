"""Input images: which files count as images, how a folder is split into shards, how one is decoded.

Every backend sees the same pixels: :func:`load_rgb` turns any grayscale, RGBA, palette or 16-bit image
into 8-bit RGB in the file's *stored* pixel order. The EXIF Orientation tag is ignored, as COLMAP
(colmap#1456), nerfstudio's loader and the trainer do: poses refer to stored pixels, so priors must too.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from preprocess.errors import S3dgsError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class InputError(S3dgsError, ValueError):
    """Bad command-line input (folder, shard spec); the message names the problem and the fix."""


class ImageReadError(S3dgsError, ValueError):
    """One image that cannot be decoded; the run reports it and goes on."""


def visible_files(folder: str | Path, what: str = "images", accepted: str = ", ".join(IMAGE_EXTENSIONS)
                  ) -> list[Path]:
    """Sorted files in ``folder`` and its subfolders, hidden files and folders skipped. Raises :class:`InputError`
    if the folder is missing, not a folder, or empty (the message names ``what`` it should hold, ``accepted``)."""
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{folder}: input folder does not exist; pass the folder that holds your {what}")
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder; pass the folder that holds your {what}")
    entries = sorted(p for p in folder.rglob("*") if not any(part.startswith(".")
                                                              for part in p.relative_to(folder).parts))
    if not entries:
        raise InputError(f"{folder}: input folder is empty; put your {what} ({accepted}) in it")
    return [p for p in entries if p.is_file()]


def list_images(folder: str | Path) -> list[Path]:
    """Sorted image files in ``folder`` and its subfolders (extensions in :data:`IMAGE_EXTENSIONS`, any case;
    hidden files and folders skipped).

    Raises :class:`InputError` if the folder is missing, not a folder, empty, or holds no images.
    """
    images = [p for p in visible_files(folder) if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not images:
        raise InputError(f"{folder}: no images found; accepted extensions (any case): {', '.join(IMAGE_EXTENSIONS)}")
    return images


def parse_shard(spec: str | None) -> tuple[int, int]:
    """``"K/N"`` (1 <= K <= N) -> ``(K, N)``; ``None`` -> ``(1, 1)``."""
    if spec is None:
        return 1, 1
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(spec))
    if not m or not (1 <= int(m.group(1)) <= int(m.group(2))):
        raise InputError(f"--shard {spec!r}: expected K/N with 1 <= K <= N, e.g. --shard 3/8 "
                         "(Slurm: --shard $((SLURM_ARRAY_TASK_ID+1))/$SLURM_ARRAY_TASK_COUNT)")
    return int(m.group(1)), int(m.group(2))


def select_shard(images: list[Path], shard: tuple[int, int]) -> list[Path]:
    """Shard ``K`` of ``N`` of the sorted list: every N-th image starting at K-1 (deterministic, balanced)."""
    k, n = shard
    return images[k - 1::n]


def open_image(path: str | Path) -> Image.Image:
    """Open ``path`` with its pixels decoded in stored order (EXIF Orientation ignored). Raises
    :class:`ImageReadError`."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            return im
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ImageReadError(f"{path}: cannot read image ({e.__class__.__name__}: {e}); "
                             "re-export it or remove it from the folder") from None


def to_rgb8(im: Image.Image) -> np.ndarray:
    """Any PIL image -> uint8 ``[H, W, 3]``.

    16-bit grayscale is scaled by 255/65535 (not clipped), float grayscale by its own maximum, alpha is composited
    on black (what the model would see where the image is transparent), palettes are expanded.
    """
    if im.mode == "F" or im.mode.startswith("I"):
        a = np.asarray(im, dtype=np.float64)
        g = a / max(a.max(initial=0.0), 1.0) if im.mode == "F" else a / 65535.0
        g8 = np.clip(np.rint(g * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(g8[..., None], 3, axis=2)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
        rgb = rgba[..., :3] * (rgba[..., 3:] / 255.0)
        return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def load_rgb(path: str | Path) -> np.ndarray:
    """Decode ``path`` to uint8 RGB ``[H, W, 3]`` in stored pixel order. Raises :class:`ImageReadError`."""
    im = open_image(path)
    try:
        return to_rgb8(im)
    except (OSError, ValueError) as e:
        raise ImageReadError(f"{path}: cannot convert image to RGB ({e}); re-export it as 8-bit RGB") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of ``path``'s stored pixels, read from the header only."""
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ImageReadError(f"{path}: cannot read image ({e.__class__.__name__}: {e}); "
                             "re-export it or remove it from the folder") from None
