"""Deterministic stand-ins for tests and benchmarks: random weights in the official checkpoint layout and
synthetic clips. Real weights cannot be downloaded offline; these go through the same loading code."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from preprocess.video_depth.dpt_temporal import sinusoid_table
from preprocess.video_depth.model import VideoDepthAnything, checkpoint_filename


def random_state_dict(encoder: str = "vits", seed: int = 0, compact: bool = False) -> OrderedDict[str, torch.Tensor]:
    """State dict with the official keys of ``encoder``, values drawn from ``numpy``'s PCG64 stream of
    ``seed`` in key order (stable across torch versions). Scales keep activations O(1) so every part of
    the network, the temporal modules included, shapes the output; ``pe`` buffers hold the real table.

    ``compact``: each tensor is a view with stride 1 along every dimension of a short random vector
    (``x[i, j] = v[i + j]``), so a vitl file takes kilobytes instead of 1.5 GB. For checking layout,
    loading and shapes of the large encoders, not for numbers."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in VideoDepthAnything(encoder).state_dict().items()}
    rng = np.random.default_rng(seed)
    state = OrderedDict()
    for key, shape in shapes.items():
        if key.endswith(".pe"):
            state[key] = sinusoid_table(shape[1], shape[2])
            continue
        x = rng.standard_normal(sum(shape) - len(shape) + 1 if compact else shape, dtype=np.float32)
        if key.endswith("gamma"):  # LayerScale
            x = 0.1 + 0.02 * x
        elif "norm" in key:  # LayerNorm / GroupNorm affine
            x = (1.0 if key.endswith("weight") else 0.0) + 0.1 * x
        elif key.endswith("bias"):
            x = 0.02 * x
        elif key.startswith("pretrained.") and len(shape) == 3 or key.endswith("mask_token"):
            x = 0.5 * x  # class token and position table
        else:  # conv / linear weights: unit gain
            x = x / np.sqrt(np.prod(shape[1:]))
        if key == "head.scratch.output_conv2.2.bias":  # keep the final ReLU mostly open
            x = np.abs(x) + 0.5
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        state[key] = t.as_strided(shape, (1,) * len(shape)) if compact else t
    return state


def save_random_checkpoint(folder: str | Path, encoder: str = "vits", seed: int = 0, metric: bool = False,
                           compact: bool = False) -> Path:
    """Write ``random_state_dict`` under the official file name in ``folder``; returns the path."""
    path = Path(folder) / checkpoint_filename(encoder, metric)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(random_state_dict(encoder, seed, compact), path)
    return path


def synthetic_clip(n_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 RGB ``[N, H, W, 3]``: smooth blobs drifting over a gradient, deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, (4, 2))
    speeds = rng.uniform(-0.03, 0.03, (4, 2))
    colours = rng.uniform(0, 255, (4, 3))
    y, x = np.mgrid[0:height, 0:width]
    y, x = y / max(height - 1, 1), x / max(width - 1, 1)
    base = np.stack([80 * x + 40, 60 * y + 60, 50 + 40 * x * y], axis=-1)
    frames = []
    for t in range(n_frames):
        image = base.copy()
        for c, v, colour in zip(centres, speeds, colours):
            cy, cx = (c + v * t) % 1.0
            blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 0.02)
            image = image * (1 - blob[..., None]) + colour * blob[..., None]
        frames.append(np.clip(np.rint(image), 0, 255).astype(np.uint8))
    return np.stack(frames)
