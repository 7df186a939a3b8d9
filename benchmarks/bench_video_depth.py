"""Frames/s and peak memory of Video Depth Anything batch and streaming inference on this CPU.

The vits architecture (random weights: timing does not depend on them) runs on synthetic clips through
``infer_video_depth`` (batch: 32-frame windows every 22 frames) and ``stream_video_depth`` (one frame
per step, cached temporal states). Each (mode, clip length) runs in its own process so its peak RSS is
its own. Batch mode holds the input clip and the output depths (the API's arrays), so its memory grows
with the clip; streaming reads frames from a generator and keeps only a running statistic of the
outputs, so its memory must stay flat. Printed beside the compute limit: measured fp32 matmul GFLOP/s
and the model FLOPs per frame (``torch.utils.flop_counter``; batch mode computes 32 frames per 22).

``--precision fp32 bf16`` runs every variant and prints each later one's depth error against the first
(per frame, relative to its largest value); ``--images DIR`` takes real frames from a folder instead.

Usage: ``python benchmarks/bench_video_depth.py [--frames 64 256] [--height 720 --width 1280]
[--input-size 518] [--modes batch stream] [--precision fp32 bf16] [--images DIR]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from collections.abc import Iterator

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))  # video_depth_testing

from bench_depth_throughput import matmul_gflops  # noqa: E402  (this folder is on sys.path)
from preprocess.video_depth import VideoDepthAnything, build_model, infer_video_depth, stream_video_depth  # noqa: E402
from preprocess.video_depth.inference import PRECISIONS, STEP, WINDOW, network_size  # noqa: E402
from video_depth_testing import save_random_checkpoint, synthetic_clip  # noqa: E402


def vits_model() -> VideoDepthAnything:
    """vits with random weights, saved as an official checkpoint and loaded by ``build_model`` (the product path)."""
    with tempfile.TemporaryDirectory() as tmp:
        return build_model("vits", save_random_checkpoint(tmp, "vits", seed=0))


def flops_per_frame(model: VideoDepthAnything, height: int, width: int, input_size: int, frames: int = 4,
                    attention: bool = False) -> float:
    """FLOPs of a ``frames``-frame clip's forward pass per frame. Only the temporal attention grows with the
    clip length: a 32-frame window counts 0.2% more per frame than 4 frames, which take an eighth of the time.
    FlopCounterMode does not count the CPU flash-attention kernel; ``attention`` counts it too (through the
    math kernel's matrix products). The compute limit uses the count without it, as the earlier tables did."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    h, w = network_size(height, width, input_size)
    x = torch.zeros(1, frames, 3, h, w)
    with torch.no_grad(), FlopCounterMode(display=False) as counter, \
            sdpa_kernel(SDPBackend.MATH if attention else SDPBackend.FLASH_ATTENTION):
        model(x)
    return counter.get_total_flops() / frames


def clip_frames(n: int, height: int, width: int, images: str | None) -> Iterator[np.ndarray]:
    """``n`` uint8 RGB frames ``[H, W, 3]``, one at a time: synthetic ones (a new seed per frame), or the
    sorted images of the folder ``images`` resized to ``width x height`` (cycled if there are fewer)."""
    paths = sorted(p for p in Path(images).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")) if images else []
    if images and not paths:
        raise SystemExit(f"--images {images}: no .jpg/.png files there")
    for i in range(n):
        if paths:
            bgr = cv2.imread(str(paths[i % len(paths)]), cv2.IMREAD_COLOR)
            yield np.ascontiguousarray(cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)[..., ::-1])
        else:
            yield synthetic_clip(1, height, width, seed=i)[0]


def worker(mode: str, n: int, height: int, width: int, input_size: int, precision: str, images: str | None,
           save: str | None) -> dict:
    """One measurement in this process: wall time and peak RSS (whole process, model included). ``save``:
    append each depth map (float32, raw) to this file, for comparing precisions."""
    model = vits_model()
    out = open(save, "wb") if save else None
    checksum = 0.0
    if mode == "batch":
        frames = np.stack(list(clip_frames(n, height, width, images)))
        start = time.perf_counter()
        depths = infer_video_depth(model, frames, input_size=input_size, precision=precision)
        seconds = time.perf_counter() - start
    else:
        start = time.perf_counter()
        depths = stream_video_depth(model, clip_frames(n, height, width, images), input_size=input_size,
                                    precision=precision)
    for depth in depths:
        checksum += float(depth.mean()) / n
        if out:
            out.write(depth.tobytes())
    if mode != "batch":
        seconds = time.perf_counter() - start  # includes writing to ``save`` (about 1 ms per frame)
    if out:
        out.close()
    return {"mode": mode, "frames": n, "seconds": seconds, "fps": n / seconds, "checksum": checksum,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def depth_error(path: str, reference: str, n: int, height: int, width: int) -> tuple[float, float]:
    """Max and mean over frames and pixels of ``|depth - reference| / max |reference|`` (per frame)."""
    a = np.fromfile(path, dtype=np.float32).reshape(n, height, width)
    b = np.fromfile(reference, dtype=np.float32).reshape(n, height, width)
    rel = np.abs(a - b) / np.abs(b).max(axis=(1, 2), keepdims=True)
    return float(rel.max()), float(rel.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[64, 256], help="clip lengths")
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--input-size", type=int, default=518)
    parser.add_argument("--modes", nargs="+", choices=["batch", "stream"], default=["batch", "stream"])
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS, default=["fp32"],
                        help="each one is run; the later ones' depth error against the first is printed")
    parser.add_argument("--images", help="folder of images for the frames (default: synthetic frames)")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "FRAMES"), help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.height, args.width, args.input_size,
                                args.precision[0], args.images, args.save)))
        return

    h, w = network_size(args.height, args.width, args.input_size)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cpus, "
          f"load average {os.getloadavg()[0]:.1f}; frames {args.width}x{args.height} -> network {w}x{h}"
          f"{'' if args.images is None else ' from ' + args.images}")
    rate = matmul_gflops(time.perf_counter)
    model = vits_model()
    flops = flops_per_frame(model, args.height, args.width, args.input_size)
    with_attention = flops_per_frame(model, args.height, args.width, args.input_size, attention=True)
    del model
    limit_fps = rate * 1e9 / flops
    print(f"matmul fp32: {rate:.0f} GFLOP/s; vits: {flops / 1e9:.1f} GFLOP/frame ({with_attention / 1e9:.1f} "
          f"with the attention products, not in the limit); compute limit "
          f"{limit_fps:.3f} network frames/s (batch computes 32 frames per 22 of video)")
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes:
            for n in args.frames:
                for precision in args.precision:
                    save = f"{tmp}/{mode}_{n}_{precision}.f32" if len(args.precision) > 1 else None
                    cmd = [sys.executable, __file__, "--worker", mode, str(n), "--height", str(args.height),
                           "--width", str(args.width), "--input-size", str(args.input_size),
                           "--precision", precision] + (["--images", args.images] if args.images else []) + \
                          (["--save", save] if save else [])
                    r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
                    computed = math.ceil(n / STEP) * WINDOW if mode == "batch" else n  # frames through the network
                    limit = limit_fps * n / computed
                    error = ""
                    if save and precision != args.precision[0]:
                        worst, mean = depth_error(save, f"{tmp}/{mode}_{n}_{args.precision[0]}.f32", n,
                                                  args.height, args.width)
                        error = f"; error vs {args.precision[0]}: max {worst:.2e}, mean {mean:.2e} of the frame's max"
                    print(f"{mode:6s} {n:4d} frames {precision}: {r['fps']:.3f} frames/s ({r['seconds']:.0f} s) = "
                          f"{r['fps'] / limit:.2f} of the limit; peak RSS {r['peak_rss_mb']:.0f} MB{error}", flush=True)


if __name__ == "__main__":
    main()
