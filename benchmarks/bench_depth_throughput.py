"""Throughput of the transformers depth backend against this machine's compute limit.

Builds the Depth Anything V2 Small architecture with random weights (timing does not depend on the
weights), saves it like a hub checkpoint and loads it through ``TransformersBackend`` (the code path
of ``generate_depth --backend transformers``). Prints, from one run:

* FLOPs per 518x518 image (counted with ``torch.utils.flop_counter.FlopCounterMode``);
* fp32 matmul GFLOP/s of this machine (best 2048^3 product) and the compute limit ``FLOPs / rate``;
* s/image of plain transformers (``from_pretrained`` + ``torch.no_grad`` forward: the reference) and
  of our backend on 518x518 PNGs (decode, preprocessing, forward, upsampling), as multiples of the limit.

Two clocks, interleaved runs (reference and backend alternate, so load changes hit both):
``wall`` with all torch threads (what a user sees), and ``cpu`` = process CPU time with one thread
(robust to other processes sharing the cores; compared with the one-thread matmul rate).

Usage: ``python benchmarks/bench_depth_throughput.py [--repeats 5] [--size 518] [--batch-size 1]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from preprocess.backends.hf_transformers import TransformersBackend  # noqa: E402


def save_v2_small(dst: Path, size: int) -> Path:
    """Depth Anything V2 Small's architecture (config of depth-anything/Depth-Anything-V2-Small-hf), random weights."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    backbone = Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, mlp_ratio=4,
                            image_size=518, patch_size=14, layerscale_value=1.0,
                            out_indices=[3, 6, 9, 12], apply_layernorm=True, reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=384,
                                 reassemble_factors=[4, 2, 1, 0.5], neck_hidden_sizes=[48, 96, 192, 384],
                                 fusion_hidden_size=64, head_hidden_size=32, depth_estimation_type="relative")
    torch.manual_seed(0)
    DepthAnythingForDepthEstimation(config).eval().save_pretrained(dst)
    DPTImageProcessorPil(size={"height": size, "width": size}, keep_aspect_ratio=True, ensure_multiple_of=14,
                         resample=3, image_mean=[0.485, 0.456, 0.406],
                         image_std=[0.229, 0.224, 0.225]).save_pretrained(dst)
    return dst


def matmul_gflops(clock, n: int = 2048, repeats: int = 6) -> float:
    """Best fp32 matmul rate over ``repeats`` products of ``n x n`` matrices, in GFLOP/s, on ``clock``."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = clock()
        torch.mm(a, b)
        best = min(best, clock() - t)
    return 2 * n ** 3 / best / 1e9


def count_flops(model: torch.nn.Module, size: int) -> float:
    """FLOPs of one forward pass on a ``size x size`` image. Load the model with ``attn_implementation="eager"``:
    FlopCounterMode does not count the CPU flash-attention kernel that sdpa uses (~35 GFLOP here)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, 3, size, size)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(pixel_values=x)
    return float(counter.get_total_flops())


def interleaved(fns: dict, repeats: int, clock) -> dict[str, float]:
    """Median time per call of each function, calling them in turn ``repeats`` times after one warm-up each."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for k, fn in fns.items():
            t = clock()
            n = fn()
            times[k].append((clock() - t) / n)
    return {k: float(np.median(v)) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per variant and clock")
    parser.add_argument("--size", type=int, default=518)
    parser.add_argument("--batch-size", type=int, default=1)
    args = parser.parse_args()
    from transformers import AutoModelForDepthEstimation
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, {os.cpu_count()} cpus, "
          f"load average {os.getloadavg()[0]:.1f} (1 min)")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_v2_small(Path(tmp) / "da2_small", args.size)
        rng = np.random.default_rng(0)
        paths = []
        for i in range(args.batch_size):
            paths.append(Path(tmp) / f"{i:03d}.png")
            Image.fromarray(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)).save(paths[-1])

        flops = count_flops(AutoModelForDepthEstimation.from_pretrained(model_dir, attn_implementation="eager"),
                            args.size)
        plain = AutoModelForDepthEstimation.from_pretrained(model_dir).eval()
        flops_seen_with_sdpa = count_flops(plain, args.size)
        backend = TransformersBackend(str(model_dir), device="cpu", batch_size=args.batch_size)
        backend.open()
        x = torch.randn(args.batch_size, 3, args.size, args.size)

        def run_plain() -> int:
            with torch.no_grad():
                plain(pixel_values=x)
            return args.batch_size

        def run_backend() -> int:
            results = list(backend.predict(paths))
            assert all(r.depth is not None and r.depth.shape == (args.size, args.size) for r in results)
            return len(results)

        print(f"model: Depth Anything V2 Small architecture, {flops / 1e9:.1f} GFLOP/image at {args.size}x{args.size} "
              f"incl. attention ({flops_seen_with_sdpa / 1e9:.1f} without the attention matmuls), "
              f"batch {args.batch_size}")
        for label, n_threads, clock in (("wall", threads, time.perf_counter), ("cpu", 1, time.process_time)):
            torch.set_num_threads(n_threads)
            rate = matmul_gflops(clock)
            limit = flops / (rate * 1e9)
            t = interleaved({"plain": run_plain, "backend": run_backend}, args.repeats, clock)
            print(f"[{label}, {n_threads} thread(s)] matmul {rate:.0f} GFLOP/s -> limit {limit:.3f} s/image; "
                  f"plain transformers {t['plain']:.3f} s/image ({t['plain'] / limit:.2f}x limit); "
                  f"TransformersBackend {t['backend']:.3f} s/image = {1 / t['backend']:.2f} images/s "
                  f"({t['backend'] / limit:.2f}x limit)")
        torch.set_num_threads(threads)
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
