"""The benchmark's naive PyTorch reference renders the same image and gradients as ours, so its speed-up is a
like-for-like comparison."""

import importlib.util
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_raster.py"
PARAMS = ("means", "quats", "scales", "opacities", "colors")


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_raster", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_naive_reference_matches_ours():
    bench = _load_bench()
    scene = bench.make_scene(300, 40, 24, seed=1)
    weights = torch.rand(1, 24, 40, 4)
    results = []
    for render_fn in (bench.ours, bench.naive_rasterization):
        leaves = {k: scene[k].clone().requires_grad_() for k in PARAMS}
        render, alphas = render_fn(**leaves, viewmats=scene["viewmats"], Ks=scene["Ks"], width=40, height=24)
        ((render * weights).sum() + alphas.sum()).backward()
        results.append((render.detach(), alphas.detach(), {k: v.grad for k, v in leaves.items()}))
    (ours_render, ours_alphas, ours_grads), (naive_render, naive_alphas, naive_grads) = results
    assert ours_alphas.max() > 0.9
    torch.testing.assert_close(naive_alphas, ours_alphas, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(naive_render, ours_render, rtol=1e-4, atol=1e-4)
    for k in PARAMS:
        scale = ours_grads[k].abs().max().item()
        assert scale > 0
        torch.testing.assert_close(naive_grads[k], ours_grads[k], rtol=1e-3, atol=1e-3 * scale)
