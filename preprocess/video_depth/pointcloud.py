"""Per-frame point-cloud CSVs in Annolid's format: ``x,y,z,intensity[,region][,red,green,blue]``.

Pinhole back-projection at the depth map size, principal point ``(W/2, H/2)``, pixel indices without a
half-pixel offset, OpenCV axes (x right, y down, z forward):
``x = (u - W/2) / fx * z``, ``y = (v - H/2) / fy * z``; ``intensity = z``; rows are pixels, row-major.

``z`` is the model's value. For a metric model that is depth in metres. For a relative model it is
affine-invariant *inverse* depth, so the cloud is not geometry (Annolid writes it anyway); with
``as_depth=True`` ``z = 1 / value`` is written instead and zero-valued pixels (infinitely far) are left
out — still only up to the unknown scale and shift of the relative prediction, so not metric either.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from preprocess.atomic_io import atomic_path

ROWS_PER_CHUNK = 65536


def back_project(z: np.ndarray, fx: float, fy: float) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame ``x, y`` ``[H, W]`` (float64) of every pixel with value ``z [H, W]``."""
    h, w = z.shape
    u = np.arange(w, dtype=np.float64)[None, :]
    v = np.arange(h, dtype=np.float64)[:, None]
    return (u - w / 2.0) / fx * z, (v - h / 2.0) / fy * z


def write_point_csv(path: str | Path, value: np.ndarray, rgb: np.ndarray | None, fx: float, fy: float,
                    labels: np.ndarray | None = None, as_depth: bool = False) -> None:
    """Write one frame's points to ``path`` atomically.

    ``value``: model output ``[H, W]``; ``rgb``: the processed frame uint8 ``[H, W, 3]`` (colour columns)
    or ``None``; ``labels``: object ``[H, W]`` of ``str | None`` from :mod:`regions` (adds ``region``).
    """
    z = value.astype(np.float64)
    keep = np.ones(z.shape, bool)
    if as_depth:
        keep = z > 0
        z = np.divide(1.0, z, out=np.zeros_like(z), where=keep)
    x, y = back_project(z, fx, fy)
    columns: list[np.ndarray] = [x[keep], y[keep], z[keep], z[keep]]
    header, fmt = ["x", "y", "z", "intensity"], ["%.6f"] * 4
    if labels is not None:
        header.append("region")
        fmt.append("%s")
        columns.append(labels[keep])
    if rgb is not None:
        header += ["red", "green", "blue"]
        fmt += ["%d"] * 3
        columns += list(rgb[keep].astype(np.int64).T)
    line = ",".join(fmt) + "\n"
    region = 4 if labels is not None else -1
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(",".join(header) + "\n")
        for i in range(0, len(columns[0]), ROWS_PER_CHUNK):
            chunk = [c[i:i + ROWS_PER_CHUNK].tolist() for c in columns]
            if region >= 0:
                chunk[region] = [_csv_cell(s) for s in chunk[region]]
            f.write("".join(line % row for row in zip(*chunk)))


def _csv_cell(label: str | None) -> str:
    """Annolid's region cell: empty, or the label in double quotes with inner quotes doubled."""
    return "" if label is None else '"' + label.replace('"', '""') + '"'
