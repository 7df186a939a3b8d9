"""Our CPU rasterizer against gsplat's CUDA `rasterization` (needs a CUDA GPU; skipped otherwise)."""

import pytest
import torch

from s3dgs.render import rasterization

from .conftest import make_scene

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU: compares with gsplat's CUDA rasterization")

PARAMS = ("means", "quats", "scales", "opacities", "colors")


def _run(s, device, render_mode, sh_degree):
    leaves = {k: s[k].detach().clone().to(device).requires_grad_() for k in PARAMS}
    bg = torch.tensor([[0.2, 0.4, 0.6], [0.9, 0.1, 0.3]], device=device)
    colors, alphas, info = rasterization(
        *(leaves[k] for k in PARAMS), s["viewmats"].to(device), s["Ks"].to(device), s["width"], s["height"],
        sh_degree=sh_degree, backgrounds=bg, render_mode=render_mode, packed=False)
    info["means2d"].retain_grad()
    weights = torch.linspace(-1, 1, colors.numel(), device=device).reshape(colors.shape)
    ((colors * weights).sum() + alphas.mean()).backward()
    grads = {k: None if v.grad is None else v.grad.cpu() for k, v in leaves.items()}
    return colors.detach().cpu(), alphas.detach().cpu(), info, grads


@pytest.mark.parametrize("render_mode,sh_degree", [("RGB", None), ("RGB+ED", 3), ("D", 0)])
def test_matches_gsplat_cuda(render_mode, sh_degree):
    s = make_scene(300, n_cams=2, sh_degree=sh_degree, width=64, height=48, seed=9, dtype=torch.float32,
                   degenerate=False)
    colors, alphas, info, grads = _run(s, "cpu", render_mode, sh_degree)
    ref_colors, ref_alphas, ref_info, ref_grads = _run(s, "cuda", render_mode, sh_degree)
    torch.testing.assert_close(alphas, ref_alphas, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(colors, ref_colors, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(info["radii"], ref_info["radii"].cpu(), rtol=0, atol=1)
    vis = (info["radii"] > 0).all(-1)
    for key in ("means2d", "depths", "conics"):
        torch.testing.assert_close(info[key].detach()[vis], ref_info[key].detach().cpu()[vis], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(info["means2d"].grad, ref_info["means2d"].grad.cpu(), rtol=1e-3,
                               atol=1e-3 * ref_info["means2d"].grad.abs().max().item())
    for k in PARAMS:
        if ref_grads[k] is None:
            continue
        torch.testing.assert_close(grads[k], ref_grads[k], rtol=1e-3, atol=1e-3 * ref_grads[k].abs().max().item())
