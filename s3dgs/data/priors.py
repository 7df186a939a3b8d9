"""Monocular depth priors from ``depth_dir``: 16-bit PNGs matched to images by stem.

Read through the preprocess contract (:mod:`preprocess.depth_png`): with ``depth_meta.json`` the values
are decoded to the model's units and ``kind`` says whether they are relative inverse depth or metric
depth; without it a PNG is relative inverse depth (larger = nearer) scaled to ``[0, 1]``, which is
what Depth Anything and its Space produce.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from preprocess.depth_png import MAX16, DepthFileError, DepthMeta, read_depth_png


@dataclass
class Priors:
    kind: str  # "inverse_depth" (relative, larger = nearer) or "depth" (metric)
    maps: dict[str, np.ndarray]  # image stem -> float32 [h, w] in the prior's units (its own resolution)
    problems: dict[str, str]  # image stem -> why it has no prior ("missing", or the read error)
    steps: dict[str, float] = field(default_factory=dict)  # image stem -> 16-bit quantisation step, prior's units


def load_priors(depth_dir: str | Path, stems: list[str]) -> Priors:
    """Read the prior of every image stem in ``stems``; missing or unreadable ones go to ``problems``."""
    depth_dir = Path(depth_dir)
    if not depth_dir.is_dir():
        raise DepthFileError(f"depth_dir {depth_dir}: not a folder; make priors with python -m preprocess.generate_depth "
                             "or set depth_dir=null")
    meta = DepthMeta.load(depth_dir)
    kind = meta.kind if meta else "inverse_depth"
    maps, problems, steps = {}, {}, {}
    for stem in stems:
        path = depth_dir / f"{stem}.png"
        if not path.exists():
            problems[stem] = f"no {path.name}"
            continue
        try:
            png = read_depth_png(path)
            maps[stem] = meta.to_float(stem, png) if meta else png.astype(np.float32) / MAX16
        except DepthFileError as e:
            problems[stem] = str(e)
            continue
        rec = meta.images[stem] if meta else {"min": 0.0, "max": 1.0}
        steps[stem] = float(rec["max"] - rec["min"]) / MAX16
    return Priors(kind, maps, problems, steps)
