"""Batch video inference with the official algorithm: 32-frame windows, overlap, keyframes, alignment.

Windows start every 22 frames. From the second window on, positions 0 and 1 of a window hold
keyframes (video frame 0 and the previous window's position 12), positions 2..9 overlap the last 8
frames already stitched, and positions 10..31 are new. A relative model's window is mapped onto the
stitched result by the least-squares scale and shift that fits its two keyframes to the stitched
ones; the 8 overlapping frames are blended linearly (weights 0, 1/7, ..., 1 for the new window).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from preprocess.video_depth.dinov2 import PATCH
from preprocess.video_depth.model import VideoDepthAnything

WINDOW = 32  # frames per forward pass
OVERLAP = 10  # window positions that repeat earlier frames
INTERP = 8  # overlapping frames blended with the previous window
STEP = WINDOW - OVERLAP  # 22: distance between window starts
KEY_POSITIONS = (0, 12)  # positions whose depths anchor the next window's scale/shift
MAX_ASPECT = 1.78  # wider frames get a smaller input size (official memory rule)
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def network_size(height: int, width: int, input_size: int = 518) -> tuple[int, int]:
    """Network input ``(h, w)`` for a ``height x width`` frame: the short side becomes ``input_size``
    (smaller for aspect ratios above 1.78), both sides rounded half-to-even to multiples of 14, never
    below the target."""
    ratio = max(height, width) / min(height, width)
    if ratio > MAX_ASPECT:
        input_size = round(int(input_size * 1.777 / ratio) / PATCH) * PATCH
    scale = max(input_size / height, input_size / width)

    def multiple(x: float) -> int:
        y = int(np.round(x / PATCH) * PATCH)
        return y if y >= input_size else int(np.ceil(x / PATCH) * PATCH)

    return multiple(scale * height), multiple(scale * width)


def preprocess_frame(frame: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """uint8 RGB ``[H, W, 3]`` -> ImageNet-normalised float32 ``[3, h, w]`` (bicubic resize in float)."""
    image = cv2.resize(frame.astype(np.float32) / 255.0, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
    image = ((image - MEAN) / STD).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def window_frames(n_frames: int) -> list[list[int]]:
    """Video frame index at each of the 32 positions of every window (the tail repeats the last frame)."""
    windows = []
    for start in range(0, n_frames, STEP):
        positions = list(range(start, start + WINDOW))
        if start:
            positions[:2] = [0, start - STEP + KEY_POSITIONS[1]]
        windows.append([min(i, n_frames - 1) for i in positions])
    return windows


def fit_scale_shift(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Least-squares ``scale, shift`` with ``pred * scale + shift ~ target`` (float32 sums, like the
    official code); ``(1, 0)`` when the system is singular."""
    pred, target = pred.astype(np.float32), target.astype(np.float32)
    a00, a01, a11 = np.sum(pred * pred), np.sum(pred), np.float32(pred.size)
    b0, b1 = np.sum(pred * target), np.sum(target)
    det = a00 * a11 - a01 * a01
    if det == 0:
        return 1, 0
    return (a11 * b0 - a01 * b1) / det, (-a01 * b0 + a00 * b1) / det


def place_model(model: torch.nn.Module, device: str | torch.device | None) -> torch.device:
    """``device`` or, if None, the model's; moves the model there."""
    device = next(model.parameters()).device if device is None else torch.device(device)
    model.to(device)
    return device


PRECISIONS = ("fp32", "fp16", "bf16")  # float32, or autocast to float16 (CUDA only) / bfloat16


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX); elsewhere oneDNN emulates it."""
    checks = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return any(check() for check in checks if check is not None)  # private torch helpers: absent means unknown


def check_precision(precision: str, device: torch.device) -> str:
    """``precision`` if ``device`` runs it, else ValueError naming the fix: fp16 is CUDA-only, bf16 on the
    CPU needs native bf16 matmul (emulated bf16 is slower than fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision fp16 needs CUDA (device is {device}); use bf16 or fp32 on the CPU")
    if precision == "bf16" and device.type == "cpu" and not native_bf16():
        raise ValueError("precision bf16: this CPU has no native bf16 matmul (AVX512-BF16 or AMX), where "
                         "emulated bf16 is slower than fp32; use fp32")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for ``precision`` (checked by :func:`check_precision`); none for fp32."""
    if check_precision(precision, device) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if precision == "fp16" else torch.bfloat16)


def upsample(depth: torch.Tensor, height: int, width: int) -> np.ndarray:
    """Network-resolution depths ``[T, h, w]`` -> float32 ``[T, H, W]`` (bilinear, align_corners)."""
    depth = F.interpolate(depth.float().unsqueeze(1), size=(height, width), mode="bilinear", align_corners=True)
    return depth[:, 0].cpu().numpy()


def run_window(model: VideoDepthAnything, frames: Sequence[np.ndarray], indices: list[int], size: tuple[int, int],
               precision: str, device: torch.device) -> torch.Tensor:
    """Raw depths ``[32, h, w]`` (float32, CPU) of the window made of ``frames[i] for i in indices``."""
    clip = torch.stack([preprocess_frame(frames[i], size) for i in indices]).unsqueeze(0).to(device)
    with torch.no_grad(), autocast(device, precision):
        return model(clip)[0].float().cpu()


def stitch_windows(windows: Iterable[np.ndarray], n_frames: int, metric: bool) -> Iterator[np.ndarray]:
    """Frame-size window depths ``[32, H, W]`` (in :func:`window_frames` order) -> the ``N`` stitched frames
    ``[H, W]`` in order, each yielded as soon as no later window changes it. Each window after the first
    is aligned to the result by scale and shift (unless ``metric``) and blended over the overlap."""
    weights = [0.0] + [i * (1.0 / (INTERP - 1)) for i in range(1, INTERP - 1)] + [1.0]
    pending: list[np.ndarray] = []  # the last INTERP stitched frames, still to be blended with the next window
    refs: list[np.ndarray] = []
    emitted = 0
    for k, depth in enumerate(windows):
        if k == 0:
            final, pending = list(depth[:WINDOW - INTERP]), list(depth[WINDOW - INTERP:])
            refs = [depth[p] for p in KEY_POSITIONS]
        else:
            scale, shift = (1.0, 0.0) if metric else fit_scale_shift(
                np.concatenate(depth[:len(KEY_POSITIONS)]), np.concatenate(refs))
            aligned = {p: np.maximum(depth[p] * scale + shift, 0) for p in range(OVERLAP - INTERP, WINDOW)}
            final = [pending[i] * (1 - weights[i]) + aligned[OVERLAP - INTERP + i] * weights[i] for i in range(INTERP)]
            final += [aligned[p] for p in range(OVERLAP, WINDOW - INTERP)]
            pending = [aligned[p] for p in range(WINDOW - INTERP, WINDOW)]
            refs = [refs[0], aligned[KEY_POSITIONS[1]]]
        for frame in final[:n_frames - emitted]:
            yield frame
        emitted += min(len(final), n_frames - emitted)
    yield from pending[:n_frames - emitted]


def infer_video_depth(model: VideoDepthAnything, frames: np.ndarray, *, input_size: int = 518,
                      precision: str = "fp32", metric: bool | None = None,
                      device: str | torch.device | None = None) -> np.ndarray:
    """Depth of every frame of a video, the official batch algorithm.

    ``frames``: uint8 RGB ``[N, H, W, 3]``. Returns float32 ``[N, H, W]``: inverse depth up to one
    scale and shift for the whole video (relative models) or metres (metric). ``metric`` (default:
    the model's) switches off the scale/shift alignment between windows. ``device`` defaults to the
    model's. ``precision``: ``fp32``, ``fp16`` (CUDA) or ``bf16`` (CUDA, or a CPU with native bf16), see
    :func:`check_precision`.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be uint8 RGB [N, H, W, 3] with N > 0, got {frames.dtype} {frames.shape}")
    metric = model.metric if metric is None else metric
    device = place_model(model, device)
    check_precision(precision, device)
    n, height, width = frames.shape[:3]
    size = network_size(height, width, input_size)
    windows = (upsample(run_window(model, frames, indices, size, precision, device), height, width)
               for indices in window_frames(n))
    out = np.empty((n, height, width), dtype=np.float32)
    for i, frame in enumerate(stitch_windows(windows, n, metric)):
        out[i] = frame
    return out
