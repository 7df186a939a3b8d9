"""Per-frame point-cloud CSVs in Annolid's format: ``x,y,z,intensity[,region][,red,green,blue]``.

Pinhole back-projection at the depth map size, principal point ``(W/2, H/2)``, pixel indices without a
half-pixel offset, OpenCV axes (x right, y down, z forward):
``x = (u - W/2) / fx * z``, ``y = (v - H/2) / fy * z``; ``intensity = z``; rows are pixels, row-major.

``z`` is the model's value. For a metric model that is depth in metres. For a relative model it is
affine-invariant *inverse* depth, so the cloud is not geometry (Annolid writes it anyway); with
``as_depth=True`` ``z = 1 / value`` is written instead and zero-valued pixels (infinitely far) are left
out — still only up to the unknown scale and shift of the relative prediction, so not metric either.

The text is exactly Python's ``"%.6f"`` (numbers) and ``"%d"`` (colours) of each value, written by a numba
kernel that formats chunks of rows on every core the process may use, in threads (the kernel releases the
GIL), while the file is written in order (``benchmarks/bench_point_csv.py``).
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numba
import numpy as np

from preprocess.atomic_io import atomic_path
from preprocess.video_depth.regions import RegionLabels

ROWS_PER_CHUNK = 65536
FAST_LIMIT = 1e9  # |value| below this: round(|value| * 1e6) fits float64's integers exactly, <= 10 digits
FIXED6_BYTES = 18  # sign, 10 integer digits, point, 6 decimals
MAX_WORKERS = 8  # threads formatting chunks (the numba kernels release the GIL)


def back_project(z: np.ndarray, fx: float, fy: float) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame ``x, y`` ``[H, W]`` (float64) of every pixel with value ``z [H, W]``."""
    h, w = z.shape
    u = np.arange(w, dtype=np.float64)[None, :]
    v = np.arange(h, dtype=np.float64)[:, None]
    return (u - w / 2.0) / fx * z, (v - h / 2.0) / fy * z


def write_point_csv(path: str | Path, value: np.ndarray, rgb: np.ndarray | None, fx: float, fy: float,
                    labels: RegionLabels | None = None, as_depth: bool = False) -> None:
    """Write one frame's points to ``path`` atomically.

    ``value``: model output ``[H, W]``; ``rgb``: the processed frame uint8 ``[H, W, 3]`` (colour columns)
    or ``None``; ``labels``: the frame's :class:`~preprocess.video_depth.regions.RegionLabels` (adds ``region``).
    """
    z = value.astype(np.float64)
    keep = None
    if as_depth:
        keep = z > 0
        z = np.divide(1.0, z, out=np.zeros_like(z), where=keep)
    x, y = back_project(z, fx, fy)
    numbers = np.stack([x, y, z], axis=-1).reshape(-1, 3)  # [N, 3] in pixel order; intensity repeats z
    if keep is not None:
        numbers = numbers[keep.ravel()]
    header = ["x", "y", "z", "intensity"]
    codes, cells = np.zeros(len(numbers), np.intp), _texts([])
    if labels is not None:
        header.append("region")
        codes = (labels.ids.ravel() if keep is None else labels.ids[keep]).astype(np.intp)
        # Annolid's region cell: empty, or the label in double quotes with inner quotes doubled
        cells = _texts([b"" if s is None else ('"' + s.replace('"', '""') + '"').encode() for s in labels.names])
    colours = np.zeros((len(numbers), 0), np.uint8)
    if rgb is not None:
        header += ["red", "green", "blue"]
        colours = np.ascontiguousarray(rgb.reshape(-1, 3) if keep is None else rgb[keep])

    def chunk(i: int) -> np.ndarray:
        rows = slice(i, i + ROWS_PER_CHUNK)
        return _format_rows(numbers[rows], codes[rows], cells, colours[rows], labels is not None)

    workers = min(_usable_cpus(), MAX_WORKERS)
    with atomic_path(path) as tmp, open(tmp, "wb") as f, ThreadPoolExecutor(workers) as pool:
        f.write((",".join(header) + "\n").encode())
        pending: deque[Future] = deque()
        for i in range(0, len(numbers), ROWS_PER_CHUNK):  # format chunks in parallel, write them in order
            pending.append(pool.submit(chunk, i))
            if len(pending) > 2 * workers:  # a bounded window: at most this many formatted chunks held
                f.write(pending.popleft().result())
        while pending:
            f.write(pending.popleft().result())


def _usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, e.g. under ``taskset``)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _format_rows(numbers: np.ndarray, codes: np.ndarray, cells: tuple[np.ndarray, np.ndarray],
                 colours: np.ndarray, region: bool) -> np.ndarray:
    """CSV lines of ``numbers [N, 3]`` (x, y, z; z again as intensity), region cell ``codes [N]`` into
    ``cells``, ``colours [N, 0 or 3]`` uint8, as uint8 text. Values the kernel cannot round exactly go
    through Python."""
    slow = np.flatnonzero(_slow_values(numbers))
    others = _texts([b"%.6f" % v for v in numbers.ravel()[slow].tolist()])
    slot = np.full(numbers.shape, -1, np.int64)
    slot.ravel()[slow] = np.arange(len(slow))
    widest = max([FIXED6_BYTES] + np.diff(others[1]).tolist())
    row_bytes = 4 * (widest + 1) + int(np.diff(cells[1]).max(initial=0)) + 1 + 4 * colours.shape[1]
    out = np.empty(len(numbers) * row_bytes, np.uint8)
    size = _format_kernel(numbers, slot, *others, codes, *cells, region, colours, out)
    return out[:size]


def _texts(texts: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Byte strings as one uint8 buffer and their offsets ``[len + 1]``."""
    offsets = np.zeros(len(texts) + 1, np.int64)
    offsets[1:] = np.cumsum([len(t) for t in texts])
    return np.frombuffer(b"".join(texts), np.uint8).copy(), offsets


@numba.njit(cache=True)
def _exact(v: float) -> bool:
    """Whether ``rint(|v| * 1e6)`` in float64 is the correctly rounded ``|v| * 1e6``: finite, below
    ``FAST_LIMIT``, and the rounded product more than two ulps from a half-way point (there its own
    rounding could decide, or a tie must go to even)."""
    mag = abs(v)
    scaled = mag * 1e6
    return mag < FAST_LIMIT and abs(scaled - np.floor(scaled) - 0.5) > 4.5e-16 * scaled


@numba.njit(cache=True, nogil=True)
def _slow_values(numbers: np.ndarray) -> np.ndarray:
    """Which values the kernel leaves to Python, bool like ``numbers``."""
    flat = numbers.ravel()
    slow = np.empty(flat.shape, np.bool_)
    for i in range(flat.size):
        slow[i] = not _exact(flat[i])
    return slow.reshape(numbers.shape)


_PAIRS = np.array([list(b"%02d" % i) for i in range(100)], np.uint8)  # [100, 2] "00".."99"
_SMALL = np.array([list(b"%-4d" % i) for i in range(1000)], np.uint8)  # [1000, 4] "0   ".."999 "
_SMALL_LEN = np.array([len(str(i)) for i in range(1000)], np.int64)


@numba.njit(cache=True, inline="always")
def _put_uint(out, k, n):
    """Decimal digits of ``n`` (uint64). Below 1000 (most values) without branches: four bytes are
    stored and the position advances by the digit count (the next write covers the rest)."""
    if n < np.uint64(1000):
        out[k], out[k + 1], out[k + 2], out[k + 3] = _SMALL[n, 0], _SMALL[n, 1], _SMALL[n, 2], _SMALL[n, 3]
        return k + _SMALL_LEN[n]
    digits, rest = 1, n
    while rest >= np.uint64(10):
        rest //= np.uint64(10)
        digits += 1
    for j in range(k + digits - 1, k - 1, -1):
        out[j] = np.uint8(48) + np.uint8(n % np.uint64(10))
        n //= np.uint64(10)
    return k + digits


@numba.njit(cache=True, inline="always")
def _put_fixed6(out, k, v):
    """``"%.6f" % v`` for a value that passes ``_exact``."""
    out[k] = 45  # "-", kept for negative values ("%.6f" % -0.0 == "-0.000000")
    k += np.int64(np.signbit(v))
    n = np.uint64(np.rint(abs(v) * 1e6))
    whole = n // np.uint64(1000000)
    k = _put_uint(out, k, whole)
    frac = n - whole * np.uint64(1000000)
    high, low = frac // np.uint64(10000), frac % np.uint64(100)
    mid = (frac // np.uint64(100)) % np.uint64(100)
    out[k] = 46
    out[k + 1], out[k + 2] = _PAIRS[high, 0], _PAIRS[high, 1]
    out[k + 3], out[k + 4] = _PAIRS[mid, 0], _PAIRS[mid, 1]
    out[k + 5], out[k + 6] = _PAIRS[low, 0], _PAIRS[low, 1]
    return k + 7


@numba.njit(cache=True, nogil=True)
def _format_kernel(numbers, slot, texts, text_offsets, codes, cells, cell_offsets, region, colours, out):
    """Write the CSV lines into ``out`` (uint8, large enough); returns the number of bytes written.
    ``slot[i, c] >= 0``: the value comes formatted as text number ``slot`` of ``texts``."""
    k = 0
    for i in range(numbers.shape[0]):
        for c in range(3):
            start = k
            if slot[i, c] < 0:
                k = _put_fixed6(out, k, numbers[i, c])
            else:
                for j in range(text_offsets[slot[i, c]], text_offsets[slot[i, c] + 1]):
                    out[k] = texts[j]
                    k += 1
            out[k] = 44
            k += 1
        for j in range(start, k):  # intensity: z again
            out[k] = out[j]
            k += 1
        if region:
            for j in range(cell_offsets[codes[i]], cell_offsets[codes[i] + 1]):
                out[k] = cells[j]
                k += 1
            out[k] = 44
            k += 1
        for c in range(colours.shape[1]):
            k = _put_uint(out, k, np.uint64(colours[i, c]))
            out[k] = 44
            k += 1
        out[k - 1] = 10
    return k
