"""Raw float32 depth files: one EXR per frame, and the ``<stem>_depths.npz`` built without holding the video.

EXR: ``<stem>_depths_exr/frame_%05d.exr``, one 32-bit float channel ``Z``, ZIP compression.
NPZ: one array ``depths`` float32 ``[N, H, W]`` (what ``np.load(path)["depths"]`` returns). Frames are
first kept as one ``.npy`` each in a hidden parts folder (so a killed run keeps them), then streamed
into the zip one frame at a time; memory never holds more than one frame.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from preprocess.atomic_io import atomic_path

NPZ_KEY = "depths"


def write_exr(path: str | Path, depth: np.ndarray) -> None:
    """Write float ``[H, W]`` as a single-channel ``Z`` float32 scanline EXR, atomically."""
    import OpenEXR

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with atomic_path(path) as tmp:
        OpenEXR.File(header, {"Z": np.ascontiguousarray(depth, dtype=np.float32)}).write(str(tmp))


def read_exr(path: str | Path) -> np.ndarray:
    """Channel ``Z`` of an EXR as float32 ``[H, W]``."""
    import OpenEXR

    with OpenEXR.File(str(path)) as f:
        return np.asarray(f.channels()["Z"].pixels, dtype=np.float32)


def parts_dir(npz_path: Path) -> Path:
    """Hidden folder that holds a run's per-frame ``.npy`` parts of ``npz_path`` until it is written."""
    return npz_path.parent / f".{npz_path.stem}_parts"


def part_path(npz_path: Path, seq: int) -> Path:
    return parts_dir(npz_path) / f"{seq:05d}.npy"


def write_part(npz_path: Path, seq: int, depth: np.ndarray) -> None:
    """Keep frame ``seq`` for the NPZ (atomic ``.npy``)."""
    parts_dir(npz_path).mkdir(exist_ok=True)
    with atomic_path(part_path(npz_path, seq)) as tmp:
        np.save(tmp, np.ascontiguousarray(depth, dtype=np.float32))


def _read_npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    major, _ = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    return read(f)


def npz_frame_count(npz_path: Path) -> int:
    """Frames in an existing NPZ's ``depths`` (header only); -1 if missing or unreadable."""
    try:
        with zipfile.ZipFile(npz_path) as zf, zf.open(NPZ_KEY + ".npy") as f:
            return int(_read_npy_header(f)[0][0])
    except (OSError, KeyError, ValueError, IndexError, zipfile.BadZipFile):
        return -1


def unpack_npz(npz_path: Path) -> int:
    """Split an existing NPZ back into parts, one frame at a time; return the frame count (0 if unreadable)."""
    try:
        with zipfile.ZipFile(npz_path) as zf, zf.open(NPZ_KEY + ".npy") as f:
            shape, fortran, dtype = _read_npy_header(f)
            if len(shape) != 3 or fortran:
                return 0
            frame_bytes = dtype.itemsize * shape[1] * shape[2]
            for seq in range(shape[0]):
                frame = np.frombuffer(f.read(frame_bytes), dtype).reshape(shape[1:])
                write_part(npz_path, seq, frame)
            return int(shape[0])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return 0


def assemble_npz(npz_path: Path, seqs: Sequence[int], size: tuple[int, int]) -> None:
    """Stream the parts ``seqs`` (in that order) into ``npz_path`` (compressed), then delete the parts."""
    w, h = size
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
              "shape": (len(seqs), h, w)}
    with atomic_path(npz_path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf, \
                zf.open(NPZ_KEY + ".npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, header)
            for seq in seqs:
                frame = np.load(part_path(npz_path, seq))
                if frame.shape != (h, w):
                    raise ValueError(f"{part_path(npz_path, seq)}: shape {frame.shape}, expected {(h, w)}")
                f.write(frame.astype("<f4", copy=False).tobytes())
    shutil.rmtree(parts_dir(npz_path), ignore_errors=True)
