"""``depth_run.json``: the settings an output folder's ``depth.ndjson`` was made with, so reruns resume.

A rerun into the same folder resumes only when every setting that changes the depth values is the same
(video, model, input size, max_res, frame stride, streaming/batch, precision); otherwise it stops with a
one-line error unless ``overwrite`` is set. Point-cloud settings are kept apart: changing them only
redoes the CSVs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from preprocess.atomic_io import atomic_write_json
from preprocess.errors import S3dgsError

STATE_NAME = "depth_run.json"
FORMAT = "s3dgs-video-depth/1"


class OutputFolderError(S3dgsError, ValueError):
    """An output folder holding results made with other settings; the message names the fix."""


def load_state(out: Path) -> dict[str, Any] | None:
    path = out / STATE_NAME
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def save_state(out: Path, depth_settings: dict[str, Any], point_cloud_settings: dict[str, Any] | None) -> None:
    atomic_write_json(out / STATE_NAME, {"format": FORMAT, "depth": depth_settings,
                                         "point_clouds": point_cloud_settings})


def check_resumable(out: Path, ndjson: Path, settings: dict[str, Any], state: dict[str, Any] | None) -> None:
    """Raise :class:`OutputFolderError` if ``ndjson`` holds records made with other ``settings``."""
    if not ndjson.exists() or ndjson.stat().st_size == 0:
        return
    fix = "pass overwrite=True (CLI: --overwrite) to replace them, or choose another output folder"
    if state is None:
        raise OutputFolderError(f"{ndjson} has records from another tool or an unknown run (no valid "
                                f"{STATE_NAME} beside it); {fix}")
    old = state.get("depth") or {}
    diffs = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in settings.items() if old.get(k) != v]
    if diffs:
        raise OutputFolderError(f"{ndjson} was made with other settings ({'; '.join(diffs)}); {fix}")
