"""Read a depth (or confidence) map from any common file kind: one pure function per kind, each returning
float32 ``[H, W]`` with the file's own values (no unit conversion, holes left as they are: 0, NaN, inf).

Kinds (:data:`DEPTH_FILE_KINDS`): ``.npy``, ``.npz`` (one array, or the one named), ``.exr`` (first of the
channels Z, Y, R, depth), ``.pfm`` (single-channel ``Pf``), 16-bit single-channel ``.png``, and float or 16-bit
single-channel ``.tif``/``.tiff``. Arrays shaped ``[1, H, W]`` or ``[H, W, 1]`` are squeezed. Anything else
raises :class:`DepthReadError` naming the file, what was found and what is accepted.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from preprocess.errors import S3dgsError

EXR_CHANNELS = ("Z", "Y", "R", "depth")  # tried in this order
DEPTH_FILE_KINDS = {
    ".npy": "NumPy array [H, W]",
    ".npz": "NumPy archive holding one array [H, W] (or pick one by name)",
    ".exr": f"OpenEXR, first of the channels {'/'.join(EXR_CHANNELS)}",
    ".pfm": "Portable Float Map, single channel (Pf)",
    ".png": "16-bit single-channel PNG",
    ".tif": "float or 16-bit single-channel TIFF",
    ".tiff": "float or 16-bit single-channel TIFF",
}


class DepthReadError(S3dgsError, ValueError):
    """A file that cannot be read as one depth map; the message names the file, what was found and what is
    accepted."""


def accepted_kinds() -> str:
    """``".npy, .npz, ..."``: the extensions :func:`read_depth_file` reads (any case)."""
    return ", ".join(DEPTH_FILE_KINDS)


def check_kind(path: Path) -> None:
    """Raise :class:`DepthReadError` unless ``path``'s extension is one of :data:`DEPTH_FILE_KINDS` (any case)."""
    if path.suffix.lower() not in DEPTH_FILE_KINDS:
        raise DepthReadError(f"{path}: found {path.suffix or 'a file without extension'}, not a depth file kind "
                             f"this reads; accepted: {accepted_kinds()} (convert it, or move it out of the folder)")


def read_depth_file(path: str | Path, npz_key: str | None = None) -> np.ndarray:
    """The map in ``path`` as float32 ``[H, W]``, dispatched on the extension (any case). ``npz_key`` names the
    array of an ``.npz`` holding several. Raises :class:`DepthReadError`."""
    path = Path(path)
    check_kind(path)
    ext = path.suffix.lower()
    if not path.is_file():
        raise DepthReadError(f"{path}: not a file")
    readers = {".npy": read_npy, ".exr": read_exr, ".pfm": read_pfm}
    try:
        if ext == ".npz":
            return read_npz(path, npz_key)
        return readers.get(ext, read_image)(path)
    except DepthReadError:
        raise
    except (OSError, ValueError, RuntimeError, EOFError) as e:  # truncated or corrupt files
        raise DepthReadError(f"{path}: cannot read it as {DEPTH_FILE_KINDS[ext]} "
                             f"({e.__class__.__name__}: {e})") from None


def as_map(a: np.ndarray, path: Path, what: str) -> np.ndarray:
    """A real numeric array ``[H, W]`` (or ``[1, H, W]``, ``[H, W, 1]``) -> float32 ``[H, W]``; else
    :class:`DepthReadError` saying ``what`` was found."""
    if a.dtype.kind not in "fiu":
        raise DepthReadError(f"{path}: {what} has dtype {a.dtype}; accepted: a real-valued (float or integer) "
                             "map [H, W]")
    if a.ndim == 3 and 1 in (a.shape[0], a.shape[2]):
        a = a.reshape(a.shape[1:] if a.shape[0] == 1 else a.shape[:2])
    if a.ndim != 2 or min(a.shape) < 1:
        raise DepthReadError(f"{path}: {what} has shape {a.shape}; accepted: one map [H, W] (or [1, H, W], "
                             "[H, W, 1])")
    return a.astype(np.float32)


def read_npy(path: Path) -> np.ndarray:
    """``.npy`` holding one array ``[H, W]`` -> float32 ``[H, W]`` (pickles refused)."""
    return as_map(np.load(path, allow_pickle=False), path, "the array")


def read_npz(path: Path, key: str | None = None) -> np.ndarray:
    """``.npz``: its only array, or the array named ``key`` -> float32 ``[H, W]``."""
    with np.load(path, allow_pickle=False) as z:
        names = list(z.files)
        if key is None and len(names) != 1:
            raise DepthReadError(f"{path}: holds {len(names)} arrays ({', '.join(names) or 'none'}); "
                                 "pick one with --npz-key NAME")
        if key is not None and key not in names:
            raise DepthReadError(f"{path}: no array named {key!r}; it holds {', '.join(names) or 'none'}")
        name = key if key is not None else names[0]
        return as_map(z[name], path, f"array {name!r}")


def read_exr(path: Path) -> np.ndarray:
    """OpenEXR (scanline or tiled, any compression): the first of the channels :data:`EXR_CHANNELS` ->
    float32 ``[H, W]``."""
    import OpenEXR

    channels = OpenEXR.File(str(path), separate_channels=True).channels()
    name = next((c for c in EXR_CHANNELS if c in channels), None)
    if name is None:
        raise DepthReadError(f"{path}: channels {', '.join(sorted(channels)) or 'none'}; accepted: a channel named "
                             f"{', '.join(EXR_CHANNELS)}")
    return as_map(np.asarray(channels[name].pixels), path, f"channel {name}")


def read_pfm(path: Path) -> np.ndarray:
    """Portable Float Map ``Pf`` -> float32 ``[H, W]``, top row first. The header is ``Pf``, ``W H`` and a scale
    whose sign gives the byte order (negative: little-endian); rows are stored bottom to top."""
    with open(path, "rb") as f:
        magic = f.readline().strip()
        if magic != b"Pf":
            found = "a 3-channel PFM (PF)" if magic == b"PF" else f"header {magic[:16]!r}"
            raise DepthReadError(f"{path}: found {found}; accepted: a single-channel PFM (Pf)")
        try:
            w, h = (int(v) for v in f.readline().split())
            scale = float(f.readline().strip())
        except ValueError:
            raise DepthReadError(f"{path}: malformed PFM header; expected 'Pf', 'W H' and a scale") from None
        data = np.frombuffer(f.read(), dtype="<f4" if scale < 0 else ">f4")
    if data.size != w * h:
        raise DepthReadError(f"{path}: PFM says {w}x{h} but holds {data.size} values")
    return np.flipud(data.reshape(h, w)).astype(np.float32)


def read_image(path: Path) -> np.ndarray:
    """16-bit single-channel PNG, or float / 16-bit single-channel TIFF -> float32 ``[H, W]`` (raw values)."""
    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if a is None:
        raise DepthReadError(f"{path}: OpenCV cannot decode it; accepted: {DEPTH_FILE_KINDS[path.suffix.lower()]}")
    channels = 1 if a.ndim == 2 else a.shape[2]
    if channels != 1 or a.dtype not in (np.uint16, np.float32, np.float64) or (
            a.dtype != np.uint16 and path.suffix.lower() == ".png"):
        raise DepthReadError(f"{path}: found {channels}-channel {a.dtype} pixels; accepted: "
                             f"{DEPTH_FILE_KINDS[path.suffix.lower()]}")
    return a.astype(np.float32)
