"""Region labels per pixel from Annolid's annotations next to a video.

For ``videos/mice.mp4`` Annolid keeps its tracking results in ``videos/mice/``: per-frame LabelMe JSON
``mice_000000042.json`` and/or the AnnotationStore ``mice_annotations.ndjson`` (records keyed by
``"frame"``). For a frame, the per-frame JSON's ``shapes`` are used when present; otherwise (file
absent, unreadable, or a store stub without ``shapes``) the store's last record for that frame.
Shapes with a label: ``rectangle`` becomes the bounding box of its points (2 opposite or 4 corners), any other shape with at
least 3 points a polygon; points are scaled from ``imageWidth x imageHeight`` to the depth map size.
Earlier shapes win where shapes overlap.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)
STORE_SUFFIX = "_annotations.ndjson"


def annotation_dir(input_video: str | Path) -> Path | None:
    """Annolid's tracking folder for a video (the video path without its suffix), if it exists."""
    folder = Path(input_video).expanduser().with_suffix("")
    return folder if folder.is_dir() else None


@dataclass(frozen=True)
class RegionLabels:
    """One frame's label per pixel: ``names[ids[y, x]]``, ``ids [H, W]`` int32 and ``names[0] is None`` (no
    region). ``labels[y, x]`` reads one pixel's label."""

    ids: np.ndarray
    names: tuple[str | None, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.ids.shape

    def __getitem__(self, index: tuple[int, int]) -> str | None:
        return self.names[self.ids[index]]


class RegionLabeler:
    """Rasterise a video's Annolid shapes into per-pixel labels, frame by frame."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._store: dict[int, dict[str, Any]] | None = None

    def _frame_json(self, frame_index: int) -> dict[str, Any] | None:
        path = self.folder / f"{self.folder.name}_{frame_index:09d}.json"
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            log.warning("%s: unreadable annotation (%s); trying the annotation store", path, e)
            return None
        return data if isinstance(data, dict) and isinstance(data.get("shapes"), list) else None

    def _store_record(self, frame_index: int) -> dict[str, Any] | None:
        if self._store is None:
            self._store = {}
            path = self.folder / f"{self.folder.name}{STORE_SUFFIX}"
            if path.is_file():
                with open(path, encoding="utf-8") as f:
                    for line in f:
                        try:
                            rec = json.loads(line)
                            self._store[int(rec["frame"])] = rec
                        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                            continue
        return self._store.get(frame_index)

    def labels(self, frame_index: int, width: int, height: int) -> RegionLabels | None:
        """The frame's :class:`RegionLabels` at ``width x height``; ``None`` if the frame has no shapes."""
        data = self._frame_json(frame_index) or self._store_record(frame_index)
        shapes = [s for s in (data or {}).get("shapes") or [] if isinstance(s, dict) and s.get("label")]
        if not shapes:
            return None
        sx = width / float(data.get("imageWidth") or width)
        sy = height / float(data.get("imageHeight") or height)
        ids = np.zeros((height, width), np.int32)
        names: list[str | None] = [None]
        for shape in reversed(shapes):  # earlier shapes are painted last, so they win
            poly = _polygon(shape, sx, sy)
            if poly is None:
                continue
            names.append(str(shape["label"]))
            cv2.fillPoly(ids, [poly], len(names) - 1)
        if len(names) == 1:
            return None
        return RegionLabels(ids, tuple(names))


def _polygon(shape: dict[str, Any], sx: float, sy: float) -> np.ndarray | None:
    try:
        pts = np.asarray(shape.get("points") or [], dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        return None
    if shape.get("shape_type") == "rectangle" and len(pts) >= 2:
        (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)  # 2 or 4 corners alike
        pts = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    elif len(pts) < 3:
        return None
    return np.rint(pts * [sx, sy]).astype(np.int32)
