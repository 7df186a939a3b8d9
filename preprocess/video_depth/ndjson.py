"""``depth.ndjson``: one Annolid frame record per line, each carrying a 16-bit PNG depth map in base64.

Record keys, in Annolid's order: ``version`` ("Depth-Anything"), ``flags`` ({}), ``shapes`` ([]),
``imagePath`` (""), ``imageHeight``, ``imageWidth`` (depth map size), ``otherData.depth_map`` =
``{"image_data": base64 PNG, "scale": {"min", "max"}, "dtype": "uint16", "kind", "units", "model"}``,
``frame_index`` (source video frame), ``video_name`` (basename with extension), and, when the video's
frame rate is known, ``timestamp_sec``. ``kind``/``units``/``model``/``timestamp_sec`` are our additions,
allowed by Annolid's record schema and ignored by its readers. Decoding:
``depth = png / 65535 * (max - min) + min`` (see :func:`decode_depth`).

Lines are appended one ``write`` each, flushed and fsynced, so a killed run leaves at most one torn last
line, which :func:`repair_tail` removes. Readers keep the last record per ``frame_index``.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from preprocess.atomic_io import atomic_path
from preprocess.depth_png import DepthFileError, dequantize, quantize

NDJSON_NAME = "depth.ndjson"
VERSION = "Depth-Anything"


def encode_png16(q: np.ndarray) -> bytes:
    """uint16 ``[H, W]`` -> bytes of a single-channel 16-bit PNG."""
    ok, buf = cv2.imencode(".png", q)
    if not ok:
        raise OSError("16-bit PNG encoding failed")
    return buf.tobytes()


def depth_record(depth: np.ndarray, *, frame_index: int, video_name: str, kind: str, units: str | None,
                 model: str, timestamp_sec: float | None = None) -> dict[str, Any]:
    """The Annolid record for one float depth map ``[H, W]`` normalised to its own min/max."""
    q, vmin, vmax = quantize(depth)
    depth_map = {"image_data": base64.b64encode(encode_png16(q)).decode("ascii"),
                 "scale": {"min": vmin, "max": vmax}, "dtype": "uint16",
                 "kind": kind, "units": units, "model": model}
    record = {"version": VERSION, "flags": {}, "shapes": [], "imagePath": "",
              "imageHeight": int(depth.shape[0]), "imageWidth": int(depth.shape[1]),
              "otherData": {"depth_map": depth_map}, "frame_index": int(frame_index), "video_name": video_name}
    if timestamp_sec is not None:
        record["timestamp_sec"] = round(float(timestamp_sec), 6)
    return record


def depth_levels(record: dict[str, Any]) -> tuple[np.ndarray, float, float]:
    """A record's depth map as stored: uint16 levels ``[H, W]`` and the ``(min, max)`` they span."""
    dm = record["otherData"]["depth_map"]
    buf = np.frombuffer(base64.b64decode(dm["image_data"]), np.uint8)
    q = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if q is None or q.dtype != np.uint16:
        raise DepthFileError(f"frame {record.get('frame_index')}: depth_map.image_data is not a 16-bit PNG")
    if q.ndim == 3:
        q = q[..., 0]
    scale = dm.get("scale") or {}
    return q, float(scale.get("min", 0.0)), float(scale.get("max", 1.0))


def decode_depth(record: dict[str, Any]) -> np.ndarray:
    """A record's depth map as float32 ``[H, W]`` in the model's units (16-bit precision)."""
    return dequantize(*depth_levels(record))


def index_records(path: str | Path) -> dict[int, tuple[int, float, float]]:
    """``frame_index -> (byte offset, scale min, scale max)`` of the last complete record per frame.

    Streams the file once; memory holds only this index. Missing file: empty index.
    """
    index: dict[int, tuple[int, float, float]] = {}
    if not Path(path).exists():
        return index
    pos = 0
    with open(path, "rb") as f:
        for line in f:
            start, pos = pos, pos + len(line)
            if not line.endswith(b"\n"):
                break
            try:
                rec = json.loads(line)
                scale = rec["otherData"]["depth_map"]["scale"]
                index[int(rec["frame_index"])] = (start, float(scale["min"]), float(scale["max"]))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
    return index


def read_record_at(path: str | Path, offset: int) -> dict[str, Any]:
    """The record on the line starting at byte ``offset``."""
    with open(path, "rb") as f:
        f.seek(offset)
        return json.loads(f.readline())


def repair_tail(path: str | Path, chunk: int = 1 << 20) -> bool:
    """Cut a torn last line (no trailing newline) left by a killed writer; return whether one was cut.

    Reads backwards from the end in ``chunk``-byte steps, so a large file is not loaded.
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return False
    with open(path, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        f.seek(end - 1)
        if f.read(1) == b"\n":
            return False
        pos = end
        while pos > 0:
            start = max(pos - chunk, 0)
            f.seek(start)
            cut = f.read(pos - start).rfind(b"\n")
            if cut >= 0:
                f.truncate(start + cut + 1)
                return True
            pos = start
        f.truncate(0)
    return True


class RecordAppender:
    """Append records to an ndjson file, one durable ``write`` per record; the file is opened (created)
    at the first record."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def opened(self) -> bool:
        return self._fd is not None

    def append(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(self._fd, (json.dumps(record) + "\n").encode())
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RecordAppender":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def compact(path: str | Path) -> int:
    """Rewrite ``path`` atomically with one record per ``frame_index`` (the last), sorted by frame.

    Streams the file twice; memory holds only the byte offsets. Returns the number of records kept.
    Does nothing when the file is already compact and sorted.
    """
    index = index_records(path)
    order = sorted(index)
    if [index[k][0] for k in order] == _line_starts(path):
        return len(order)
    with atomic_path(path) as tmp, open(path, "rb") as src, open(tmp, "wb") as dst:
        for frame in order:
            src.seek(index[frame][0])
            dst.write(src.readline())
    return len(order)


def _line_starts(path: str | Path) -> list[int]:
    starts, pos = [], 0
    with open(path, "rb") as f:
        for line in f:
            starts.append(pos)
            pos += len(line)
    return starts
