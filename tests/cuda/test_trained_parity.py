"""Our CPU rasterizer against gsplat's CUDA kernels on a trained scene: the example trained on the CPU (the Gaussians
of its ckpt.pt: ~22k, SH degree 3, sizes and opacities as training left them, many overlapping per pixel), one
training camera rendered as the trainer renders it (RGB + expected depth), images, projections and gradients
compared. tests/render/test_cuda_parity.py does the same on 300 random Gaussians."""

import pytest
import torch

from s3dgs.checkpoint import read_checkpoint
from s3dgs.data.scene import load_scene
from s3dgs.render import rasterization

from .conftest import GPU, GPU_BACKEND

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU: compares with gsplat's CUDA rasterization")

LEAVES = ("means", "quats", "scales", "opacities", "colors")
# test_cuda_parity.py's tolerances. With tens of thousands of Gaussians a few pixel-Gaussian pairs sit on a
# threshold (alpha 1/255, transmittance 1e-4) that gsplat's fast-math exp and our exp put on different sides; each
# such pair moves one pixel by at most its alpha (about 1/255) and that Gaussian's gradient there, so a few elements
# in a thousand may differ beyond the per-element tolerance, by no more than that.
SHARE = 0.999


def render(g: dict[str, torch.Tensor], viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int, device: str,
           backend: str):
    leaves = {k: g[k].detach().clone().to(device).requires_grad_() for k in LEAVES}
    colors, alphas, info = rasterization(
        *(leaves[k] for k in LEAVES), viewmat[None].to(device), K[None].to(device), width, height, sh_degree=3,
        backgrounds=torch.zeros(1, 3, device=device), render_mode="RGB+ED", packed=False, backend=backend)
    info["means2d"].retain_grad()
    weights = torch.linspace(-1, 1, colors.numel(), device=device).reshape(colors.shape)
    ((colors * weights).sum() + alphas.mean()).backward()
    grads = {k: v.grad.cpu() for k, v in leaves.items()} | {"means2d": info["means2d"].grad.cpu()}
    return colors.detach().cpu(), alphas.detach().cpu(), info, grads


def assert_mostly_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float, worst: float,
                        what: str) -> None:
    """At least ``SHARE`` of the elements within ``atol + rtol * |expected|``, none further than ``worst``."""
    diff = (actual - expected).abs()
    far = diff > atol + rtol * expected.abs()
    assert far.float().mean() <= 1 - SHARE, f"{what}: {int(far.sum())} of {far.numel()} beyond tolerance"
    assert diff.max() <= worst, f"{what}: largest difference {float(diff.max()):.3g} > {worst:.3g}"


def test_cpu_rasterizer_matches_gsplat_cuda_on_a_trained_scene(short_runs, example_dir):
    run = short_runs("cpu", "mcmc")
    params = read_checkpoint(run.dir / "ckpt.pt")["params"]
    g = {"means": params["means"], "quats": params["quats"], "scales": torch.exp(params["scales"]),
         "opacities": torch.sigmoid(params["opacities"]), "colors": torch.cat([params["sh0"], params["shN"]], 1)}
    assert len(g["means"]) > 10000 and g["colors"].shape[1] == 16
    view = load_scene(example_dir).train[0]
    viewmat = torch.linalg.inv(view.camtoworld)

    colors, alphas, info, grads = render(g, viewmat, view.K, view.width, view.height, "cpu", "torch")
    ref_colors, ref_alphas, ref_info, ref_grads = render(g, viewmat, view.K, view.width, view.height, GPU,
                                                         GPU_BACKEND)
    assert colors.shape == ref_colors.shape == (1, view.height, view.width, 4)
    assert (ref_alphas > 0.5).float().mean() > 0.9  # a trained scene covers the view
    assert_mostly_close(alphas, ref_alphas, 1e-4, 1e-4, 1e-2, "alphas")
    assert_mostly_close(colors[..., :3], ref_colors[..., :3], 1e-4, 1e-4, 1e-2, "rgb")
    depth_scale = float(ref_colors[..., 3].abs().max())
    assert_mostly_close(colors[..., 3], ref_colors[..., 3], 1e-4, 1e-4 * depth_scale, 1e-2 * depth_scale, "depth")
    # the trained RGB image itself is close to the photo it was trained on
    assert float(((ref_colors[0, ..., :3] - view.image) ** 2).mean()) < 0.01

    radii, ref_radii = info["radii"], ref_info["radii"].cpu()
    assert_mostly_close(radii.float(), ref_radii.float(), 0, 1, float(ref_radii.max()), "radii")
    vis = (radii > 0).all(-1) & (ref_radii > 0).all(-1)
    assert vis.sum() > 1000
    for key in ("means2d", "depths", "conics"):
        a, b = info[key].detach()[vis], ref_info[key].detach().cpu()[vis]
        assert_mostly_close(a, b, 1e-4, 1e-4 * float(b.abs().max()), 1e-2 * float(b.abs().max()), key)

    for k, ref in ref_grads.items():
        scale = float(ref.abs().max())
        assert scale > 0, k
        assert_mostly_close(grads[k], ref, 1e-3, 1e-3 * scale, 0.1 * scale, f"d/d{k}")
        assert float((grads[k] - ref).norm() / ref.norm()) <= 1e-2, k
