"""Streaming inference with the official semantics: one frame at a time, cached temporal keys and values.

Each frame is cached (its keys and values in the 8 temporal attention sub-blocks). A new frame attends
to 31 cached frames: the first two cache entries and the last 29. The first frame fills all 32 entries;
once the cache holds 42 entries (from frame 11 on), entry 1 is dropped for every frame added, so the
context is frame 0, the frame 41 back, and the last 29 frames, mimicking the batch keyframes. There is
no scale/shift alignment: each frame's output is used as is, so results differ from batch mode by design.

The official code concatenates the cached states anew for every frame and projects all 32 frames' keys
and values again; here every frame's keys and values are projected once and kept in preallocated ring
slots (:class:`TemporalMemory`, 43 frames: the 42 cached and the one being added), so memory is fixed
from the first frame and nothing is copied per frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from preprocess.video_depth.dpt_temporal import TemporalAttention, TemporalMemory
from preprocess.video_depth.inference import (INTERP, OVERLAP, STEP, WINDOW, network_size, place_model,
                                              autocast, check_precision, preprocess_frame, upsample)
from preprocess.video_depth.model import VideoDepthAnything

CONTEXT_HEAD = 2  # cache slots always kept at the front (frame 0 and an old keyframe)
CACHE_LIMIT = 2 * STEP - (OVERLAP - INTERP)  # 42 cached frames at most (official gap 41, plus one)


class VideoDepthStream:
    """Per-video streaming state. ``step(frame)``: uint8 RGB ``[H, W, 3]`` -> float32 depth ``[H, W]``.

    All frames must have the first frame's size (the network size is fixed by it).
    """

    def __init__(self, model: VideoDepthAnything, *, input_size: int = 518, precision: str = "fp32",
                 device: str | torch.device | None = None):
        self.model, self.input_size, self.precision = model, input_size, precision
        self.device = place_model(model, device)
        check_precision(precision, self.device)
        self.frame_shape: tuple[int, int] | None = None
        self.cache: list[int] = []  # memory slot of each cached frame, oldest first (repeats at the start)
        self.memories = [TemporalMemory(CACHE_LIMIT + 1) for m in model.modules()
                         if isinstance(m, TemporalAttention)]  # in call order
        self.frames_seen = 0

    @property
    def cached_bytes(self) -> int:
        """Bytes held by the temporal memories (fixed once the first frame has run)."""
        return sum(m.nbytes for m in self.memories)

    def step(self, frame: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 RGB [H, W, 3], got {frame.dtype} {frame.shape}")
        if self.frame_shape is None:
            self.frame_shape = frame.shape[:2]
        elif frame.shape[:2] != self.frame_shape:
            raise ValueError(f"frame {self.frames_seen} is {frame.shape[1]}x{frame.shape[0]}, but the stream "
                             f"started at {self.frame_shape[1]}x{self.frame_shape[0]}; all frames need one size")
        height, width = self.frame_shape
        x = preprocess_frame(frame, network_size(height, width, self.input_size))[None, None].to(self.device)
        context = self.cache[:CONTEXT_HEAD] + self.cache[-(WINDOW - 1 - CONTEXT_HEAD):] if self.cache else []
        write = min(set(range(CACHE_LIMIT + 1)) - set(self.cache))
        order = torch.tensor(context, dtype=torch.long, device=self.device)
        for memory in self.memories:
            memory.order, memory.write = order, write
        with torch.no_grad(), autocast(self.device, self.precision):
            depth = self.model(x, self.memories)
        self.cache = self.cache + [write] if self.cache else [write] * WINDOW
        if len(self.cache) > CACHE_LIMIT:
            del self.cache[1]
        self.frames_seen += 1
        return upsample(depth[0], height, width)[0]


def stream_video_depth(model: VideoDepthAnything, frames: Iterable[np.ndarray], *, input_size: int = 518,
                       precision: str = "fp32", device: str | torch.device | None = None
                       ) -> Iterator[np.ndarray]:
    """Depth ``[H, W]`` float32 for each uint8 RGB frame ``[H, W, 3]``, one at a time (official streaming
    semantics); memory stays flat in the video length. Relative models give inverse depth whose scale
    may drift slowly over a long video (no alignment); metric models give metres. ``precision`` as in
    :func:`~preprocess.video_depth.inference.infer_video_depth`."""
    stream = VideoDepthStream(model, input_size=input_size, precision=precision, device=device)
    for frame in frames:
        yield stream.step(frame)
