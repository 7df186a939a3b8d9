"""Throughput of the transformers depth backend against this machine's compute limit.

Builds the Depth Anything V2 Small architecture with random weights (timing does not depend on the
weights), saves it like a hub checkpoint and loads it through ``TransformersBackend`` (the code path
of ``generate_depth --backend transformers``). Prints, from one run:

* fp32 matmul GFLOP/s of this machine (best of several 2048^3 products, all torch threads);
* FLOPs per 518x518 image (counted with ``torch.utils.flop_counter.FlopCounterMode``);
* the compute limit ``FLOPs / matmul rate`` in s/image;
* s/image and images/s of plain eager transformers (reference) and of our backend (preprocessing,
  forward, upsampling), each as a multiple of the limit.

Usage: ``python benchmarks/bench_depth_throughput.py [--images 6] [--size 518] [--batch-size 1]``
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


def matmul_gflops(n: int = 2048, repeats: int = 8) -> float:
    """Best fp32 matmul rate over ``repeats`` products of ``n x n`` matrices, in GFLOP/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def count_flops(model: torch.nn.Module, size: int) -> float:
    """FLOPs of one forward pass on a ``size x size`` image."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, 3, size, size)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(pixel_values=x)
    return float(counter.get_total_flops())


def best_time(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=6, help="timed images per variant")
    parser.add_argument("--size", type=int, default=518)
    parser.add_argument("--batch-size", type=int, default=1)
    args = parser.parse_args()
    from transformers import AutoModelForDepthEstimation

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cpus, "
          f"load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_v2_small(Path(tmp) / "da2_small", args.size)
        img_dir = Path(tmp) / "images"
        img_dir.mkdir()
        rng = np.random.default_rng(0)
        paths = []
        for i in range(args.images):
            paths.append(img_dir / f"{i:03d}.png")
            Image.fromarray(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)).save(paths[-1])

        eager = AutoModelForDepthEstimation.from_pretrained(model_dir, attn_implementation="eager").eval()
        flops = count_flops(eager, args.size)
        rate = matmul_gflops()
        limit = flops / (rate * 1e9)
        print(f"matmul fp32: {rate:.0f} GFLOP/s; model: {flops / 1e9:.1f} GFLOP/image at {args.size}x{args.size}; "
              f"compute limit {limit:.3f} s/image")

        x = torch.randn(1, 3, args.size, args.size)

        def run_eager() -> None:
            with torch.no_grad():
                eager(pixel_values=x)

        t_eager = best_time(run_eager, args.images)
        print(f"eager transformers forward (reference): {t_eager:.3f} s/image = {t_eager / limit:.2f}x limit")
        del eager

        backend = TransformersBackend(str(model_dir), device="cpu", batch_size=args.batch_size)
        backend.open()
        list(backend.predict(paths[:1]))  # warm-up
        t = time.perf_counter()
        results = list(backend.predict(paths))
        t_backend = (time.perf_counter() - t) / len(results)
        assert all(r.depth is not None and r.depth.shape == (args.size, args.size) for r in results)
        print(f"TransformersBackend (decode + preprocess + forward + upsample, batch {args.batch_size}): "
              f"{t_backend:.3f} s/image = {1 / t_backend:.2f} images/s = {t_backend / limit:.2f}x limit")
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
