"""Forward+backward speed and memory of the CPU rasterizer against a naive vectorised PyTorch reference.

Both render the same random scene (SH degree 3, render_mode "RGB+ED", one 256x256 camera) and back-propagate an
L1 colour + 0.1 L1 depth loss to means, quats, scales, opacities and SH coefficients. The naive reference shares
our projection, SH and tile binning (all vectorised PyTorch / numba) and replaces only the compositing: for each
16x16 tile, a dense [pixels x Gaussians-in-tile] alpha matrix, transmittance by cumprod, autograd for the backward
(the design of pure-PyTorch tile renderers such as torch-splatting). It applies the same rules and renders the same
image; the script prints the largest difference.

    python benchmarks/bench_raster.py                      # 10k, 50k, 200k Gaussians, 2 threads
    python benchmarks/bench_raster.py --sizes 2000 --quick # smoke run
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s3dgs.render import rasterization  # noqa: E402
from s3dgs.render.projection import ALPHA_THRESHOLD, project_gaussians  # noqa: E402
from s3dgs.render.rendering import _camera_colors  # noqa: E402
from s3dgs.render.tiles import intersect_tiles, n_tiles  # noqa: E402


def make_scene(n: int, width: int, height: int, seed: int = 0) -> dict:
    """The protocol scene: means ~ N(0, 0.5^2) + (0, 0, 3), scales U(0.01, 0.03), random unit quats, opacities
    U(0.05, 1), SH degree 3 coefficients, one pinhole camera at the origin looking down +z."""
    g = torch.Generator().manual_seed(seed)
    focal = 1.2 * width
    return dict(
        means=torch.randn(n, 3, generator=g) * 0.5 + torch.tensor([0.0, 0.0, 3.0]),
        quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1),
        scales=torch.rand(n, 3, generator=g) * 0.02 + 0.01,
        opacities=torch.rand(n, generator=g) * 0.95 + 0.05,
        colors=torch.randn(n, 16, 3, generator=g) * 0.3,
        viewmats=torch.eye(4)[None],
        Ks=torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])[None],
        width=width, height=height)


def naive_rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height, tile_size=16):
    """Same image as `rasterization(..., sh_degree=3, render_mode="RGB+ED", packed=False)`, composited tile by tile
    with dense PyTorch tensors and autograd. Returns colors [C, H, W, 4], alphas [C, H, W, 1]."""
    n_cams, n_gauss = viewmats.shape[0], means.shape[0]
    radii, means2d, depths, conics, _ = project_gaussians(means, viewmats, Ks, width, height, quats=quats,
                                                          scales=scales, opacities=opacities)
    feats = torch.cat([_camera_colors(colors, 3, means, viewmats, n_cams, n_gauss), depths[..., None]], dim=-1)
    tile_w, tile_h = n_tiles(width, height, tile_size)
    image_ids = torch.arange(n_cams).repeat_interleave(n_gauss)
    _, _, flatten_ids, offsets = intersect_tiles(means2d.reshape(-1, 2), radii.reshape(-1, 2), depths.reshape(-1),
                                                 image_ids, n_cams, tile_size, tile_w, tile_h)
    ends = torch.cat([offsets.reshape(-1)[1:], torch.tensor([len(flatten_ids)])]).tolist()
    starts = offsets.reshape(-1).tolist()
    xy, con = means2d.reshape(-1, 2), conics.reshape(-1, 3)
    op, ft = opacities.repeat(n_cams), feats.reshape(-1, feats.shape[-1])
    ys, xs = torch.meshgrid(torch.arange(tile_size) + 0.5, torch.arange(tile_size) + 0.5, indexing="ij")
    pix = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1)  # [T*T, 2] offsets inside a tile
    tiles = []
    for t, (s, e) in enumerate(zip(starts, ends)):
        if s == e:
            tiles.append(torch.zeros(tile_size * tile_size, ft.shape[-1] + 1))
            continue
        ids = flatten_ids[s:e].long()
        tile = t % (tile_w * tile_h)
        origin = torch.tensor([(tile % tile_w) * tile_size, (tile // tile_w) * tile_size], dtype=torch.float32)
        d = xy[ids][None] - (pix + origin)[:, None]  # [P, G, 2]
        c = con[ids]
        sigma = 0.5 * (c[:, 0] * d[..., 0] ** 2 + c[:, 2] * d[..., 1] ** 2) + c[:, 1] * d[..., 0] * d[..., 1]
        alpha = torch.clamp(op[ids] * torch.exp(-sigma), max=0.999)
        alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_THRESHOLD), alpha, torch.zeros_like(alpha))
        trans_incl = torch.cumprod(1.0 - alpha, dim=1)
        trans_excl = torch.cat([torch.ones_like(alpha[:, :1]), trans_incl[:, :-1]], dim=1)
        weights = alpha * trans_excl * (trans_incl > 1e-4)
        tiles.append(torch.cat([weights @ ft[ids], weights.sum(dim=1, keepdim=True)], dim=-1))
    out = torch.stack(tiles).reshape(n_cams, tile_h, tile_w, tile_size, tile_size, -1)
    out = out.permute(0, 1, 3, 2, 4, 5).reshape(n_cams, tile_h * tile_size, tile_w * tile_size, -1)
    out = out[:, :height, :width]
    render, alphas = out[..., :-1], out[..., -1:]
    render = torch.cat([render[..., :-1], render[..., -1:] / alphas.clamp(min=1e-10)], dim=-1)
    return render, alphas


def ours(means, quats, scales, opacities, colors, viewmats, Ks, width, height):
    render, alphas, _ = rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                                      sh_degree=3, render_mode="RGB+ED", packed=False, backend="torch")
    return render, alphas


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


class PeakRSS:
    """Peak resident memory above the level at entry (Linux: resets the kernel's high-water mark through
    /proc/self/clear_refs, then reads VmHWM). main() runs with MALLOC_MMAP_THRESHOLD_ fixed so that freed tensors
    go back to the OS and do not hide the next run's peak."""

    def __enter__(self):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        self.base = _status_mb("VmRSS")
        return self

    def __exit__(self, *exc):
        self.delta_mb = _status_mb("VmHWM") - self.base


def step(render_fn, scene, target):
    """One forward+backward; returns (forward s, backward s, peak MB, render, alphas)."""
    leaves = {k: scene[k].clone().requires_grad_() for k in ("means", "quats", "scales", "opacities", "colors")}
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        render, alphas = render_fn(**leaves, viewmats=scene["viewmats"], Ks=scene["Ks"], width=scene["width"],
                                   height=scene["height"])
        t1 = time.perf_counter()
        loss = (render[..., :3] - target[..., :3]).abs().mean() + 0.1 * (render[..., 3:] - target[..., 3:]).abs().mean()
        loss.backward()
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1, mem.delta_mb, render.detach(), alphas.detach()


def bench(render_fn, scene, target, repeats, warm_up=True):
    if warm_up:  # numba compile or cache load
        step(render_fn, scene, target)
    runs = [step(render_fn, scene, target) for _ in range(repeats)]
    fwd = statistics.median(r[0] for r in runs)
    bwd = statistics.median(r[1] for r in runs)
    total = statistics.median(r[0] + r[1] for r in runs)
    best = min(r[0] + r[1] for r in runs)
    return dict(fwd=fwd, bwd=bwd, total=total, best=best, mem=max(r[2] for r in runs), render=runs[-1][3],
                alphas=runs[-1][4])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of ours (median reported)")
    parser.add_argument("--naive-repeats", type=int, default=1, help="timed runs of the naive reference")
    parser.add_argument("--quick", action="store_true", help="64x64, 1 repeat each: checks that it runs")
    args = parser.parse_args()
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:  # see PeakRSS; re-run this script with it set
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})
    if args.quick:
        args.width = args.height = 64
        args.repeats = args.naive_repeats = 1
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {args.width}x{args.height}")
    print("Times are medians of the timed runs (fastest run in brackets); speed-up = naive total / ours total.")
    print("| Gaussians | intersections | ours fwd / bwd / total (s) | naive total (s) | speed-up | "
          "ours peak MB | naive peak MB | max abs(ours - naive) |")
    print("|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        scene = make_scene(n, args.width, args.height)
        target = torch.rand(1, args.height, args.width, 4)
        with torch.no_grad():
            _, _, info = rasterization(scene["means"], scene["quats"], scene["scales"], scene["opacities"],
                                       scene["colors"], scene["viewmats"], scene["Ks"], args.width, args.height,
                                       sh_degree=3, packed=False)
        n_isects = info["flatten_ids"].numel()
        a = bench(ours, scene, target, args.repeats)
        b = bench(naive_rasterization, scene, target, args.naive_repeats, warm_up=False)  # nothing to compile
        diff = max((a["render"] - b["render"]).abs().max().item(), (a["alphas"] - b["alphas"]).abs().max().item())
        print(f"| {n:,} | {n_isects:,} | {a['fwd']:.3f} / {a['bwd']:.3f} / {a['total']:.3f} ({a['best']:.3f}) | "
              f"{b['total']:.2f} ({b['best']:.2f}) | "
              f"{b['total'] / a['total']:.1f}x | {a['mem']:.0f} | {b['mem']:.0f} | {diff:.1e} |", flush=True)
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
