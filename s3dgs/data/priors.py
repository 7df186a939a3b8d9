"""Monocular depth priors from ``depth_dir``: 16-bit PNGs ``<key>.png`` matched to images by key (the stem, or
the relative path when stems repeat: ``preprocess.depth_png.prior_keys``).

Read through the preprocess contract (:mod:`preprocess.depth_png`): with ``depth_meta.json`` the values
are decoded to the model's units and ``kind`` says whether they are relative inverse depth or metric
depth; without it a PNG is relative inverse depth (larger = nearer) scaled to ``[0, 1]``, which is
what Depth Anything and its Space produce.

A ``depth_dir`` holding the video depth tool's ``depth.ndjson`` (and no ``depth_meta.json``) is read from that
file instead: image ``<key>`` takes the record whose ``frame_index`` is the last integer in the key's file name
(``frame_000123`` -> 123, ``00042`` -> 42), or the index an explicit map ``depth_frames.json`` beside it gives
(``{"<image key>": <frame index>, ...}``, for images not named by frame). Those priors come from one
video-model run, so they are ``per_sequence``: one scale and shift holds for all frames.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from preprocess.depth_png import META_NAME, DepthFileError, DepthMeta, read_depth_png
from preprocess.video_depth import ndjson
from s3dgs.data.storage import Levels


@dataclass
class Priors:
    kind: str  # "inverse_depth" (relative, larger = nearer) or "depth" (metric)
    maps: dict[str, Levels]  # image key -> its 16-bit values and range (its own resolution); NaN = no value
    problems: dict[str, str]  # image key -> why it has no prior ("missing", or the read error)
    normalization: str = "per_image"  # "per_sequence": one scale/shift relates every map to the truth
    confidence: dict[str, Levels] = field(default_factory=dict)  # image key -> 16-bit levels of [0, 1]


def load_priors(depth_dir: str | Path, keys: list[str]) -> Priors:
    """Read the prior of every image key in ``keys``, and its confidence map where depth_meta.json names one, as
    stored (16 bits a pixel); missing or unreadable ones (prior or confidence) go to ``problems``."""
    depth_dir = Path(depth_dir)
    if not depth_dir.is_dir():
        raise DepthFileError(f"depth_dir {depth_dir}: not a folder; make priors with python -m preprocess.generate_depth "
                             "or set depth_dir=null")
    if (depth_dir / ndjson.NDJSON_NAME).exists() and not (depth_dir / META_NAME).exists():
        return load_ndjson_priors(depth_dir / ndjson.NDJSON_NAME, keys)
    meta = DepthMeta.load(depth_dir)
    kind = meta.kind if meta else "inverse_depth"
    maps, problems, confidence = {}, {}, {}
    for key in keys:
        path = depth_dir / f"{key}.png"
        if not path.exists():
            problems[key] = f"no {key}.png"
            continue
        try:
            rec = meta.entry(key) if meta else {"min": 0.0, "max": 1.0}
            maps[key] = Levels(read_depth_png(path), rec["min"], rec["max"], rec.get("nodata"))
            if rec.get("confidence"):
                confidence[key] = Levels(read_depth_png(depth_dir / rec["confidence"]), 0.0, 1.0)
        except DepthFileError as e:
            maps.pop(key, None)
            problems[key] = str(e)
    normalization = meta.extra.get("normalization", "per_image") if meta else "per_image"
    return Priors(kind, maps, problems, normalization, confidence)


def frame_number(stem: str) -> int | None:
    """The last integer in an image stem (``frame_000123`` -> 123, ``00042`` -> 42); ``None`` without one."""
    digits = re.findall(r"\d+", stem)
    return int(digits[-1]) if digits else None


def _summary(numbers: list[int]) -> str:
    """``0, 2, 4, ..., 46 (24 records)``: a short list of sorted frame indices."""
    if not numbers:
        return "none (no complete record)"
    if len(numbers) <= 6:
        return ", ".join(map(str, numbers))
    return f"{numbers[0]}, {numbers[1]}, {numbers[2]}, ..., {numbers[-1]} ({len(numbers)} records)"


FRAME_MAP_NAME = "depth_frames.json"  # optional, beside depth.ndjson: {"<image key>": <frame index>, ...}


def frame_map(path: Path, keys: list[str]) -> dict[str, int | None]:
    """Each key's source frame index: from the JSON object ``path`` (:data:`FRAME_MAP_NAME`) when it exists (keys
    it leaves out: ``None``), else :func:`frame_number` of the key's file name. Raises :class:`DepthFileError`
    when the map is not an object of non-negative integers."""
    if not path.exists():
        return {key: frame_number(PurePosixPath(key).name) for key in keys}
    try:
        mapping = json.loads(path.read_text())
        if not (isinstance(mapping, dict) and all(type(v) is int and v >= 0 for v in mapping.values())):
            raise ValueError("not an object of non-negative integers")
    except (OSError, ValueError) as e:
        raise DepthFileError(f"{path}: {e}; write it as {{\"<image key>\": <frame index>, ...}} or delete it to "
                             "match frames by the number in each image name") from None
    return {key: mapping.get(key) for key in keys}


def load_ndjson_priors(path: Path, keys: list[str]) -> Priors:
    """The priors of ``keys`` from a video depth tool's ``depth.ndjson`` (matched by :func:`frame_map`);
    ``per_sequence``. Raises :class:`DepthFileError` when no key matches a record."""
    index = ndjson.index_records(path)
    frames = frame_map(path.parent / FRAME_MAP_NAME, keys)
    if not any(f in index for f in frames.values()):
        first = frames[keys[0]]
        wanted = "has no frame" if first is None else f"-> frame {first}"
        raise DepthFileError(f"{path}: no image matches a frame_index (image {keys[0]!r} {wanted}; indices "
                             f"available: {_summary(sorted(index))}); name the images by source frame index "
                             f"(e.g. frame_000123.png), map them in {FRAME_MAP_NAME} beside it, or set depth_dir "
                             "to a folder of <stem>.png priors")
    maps, problems, kinds = {}, {}, set()
    for key, frame in frames.items():
        if frame not in index:
            problems[key] = f"not in {FRAME_MAP_NAME}" if frame is None else f"no frame {frame} in {path.name}"
            continue
        try:
            record = ndjson.read_record_at(path, index[frame][0])
            maps[key] = Levels(*ndjson.depth_levels(record))
        except DepthFileError as e:
            problems[key] = str(e)
            continue
        kinds.add(record["otherData"]["depth_map"].get("kind") or "inverse_depth")
    if len(kinds) > 1:
        raise DepthFileError(f"{path}: records mix kinds {sorted(kinds)}; rerun the video depth tool into an empty "
                             "folder")
    return Priors(kinds.pop() if kinds else "inverse_depth", maps, problems, "per_sequence")
