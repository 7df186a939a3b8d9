"""gsplat's DefaultStrategy runs unchanged on CPU with our `info` and densifies, splits and prunes."""

import re

import pytest
import torch
from gsplat.strategy import DefaultStrategy

from s3dgs.render import rasterization

from .conftest import make_scene


@pytest.mark.parametrize("packed,absgrad", [(False, False), (True, True)])
def test_default_strategy_grows_splits_and_prunes(capsys, packed, absgrad):
    s = make_scene(200, n_cams=2, width=48, height=40, seed=8, dtype=torch.float32, degenerate=False)
    n = 200
    scales = s["scales"].clone()
    scales[: n // 2] *= 0.1  # small Gaussians are duplicated, large ones split
    logit_opac = torch.logit(s["opacities"])
    logit_opac[-20:] = -8.0  # sigmoid(-8) < prune_opa=0.005: pruned
    params = torch.nn.ParameterDict({
        "means": s["means"], "scales": torch.log(scales), "quats": s["quats"], "opacities": logit_opac,
        "colors": s["colors"]})
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    strategy = DefaultStrategy(refine_start_iter=1, refine_every=2, reset_every=1000, grow_grad2d=1e-5,
                               grow_scale3d=0.01, absgrad=absgrad, verbose=True)
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state(scene_scale=3.0)
    target = torch.rand(2, 40, 48, 3)
    for step in range(3):
        colors, alphas, info = rasterization(
            params["means"], params["quats"], torch.exp(params["scales"]), torch.sigmoid(params["opacities"]),
            params["colors"], s["viewmats"], s["Ks"], 48, 40, packed=packed, absgrad=absgrad)
        strategy.step_pre_backward(params, optimizers, state, step, info)
        loss = (colors - target).abs().mean()
        loss.backward()
        assert info["means2d"].grad is not None and info["means2d"].grad.abs().sum() > 0
        strategy.step_post_backward(params, optimizers, state, step, info, packed=packed)
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad()
    out = capsys.readouterr().out
    grown = re.search(r"(\d+) GSs duplicated, (\d+) GSs split", out)
    pruned = re.search(r"(\d+) GSs pruned. Now having (\d+) GSs", out)
    assert grown and pruned, out
    n_dupli, n_split, n_prune, n_final = (int(v) for v in (*grown.groups(), *pruned.groups()))
    assert n_dupli > 0 and n_split > 0 and n_prune >= 20
    assert n_final == n + n_dupli + n_split - n_prune == len(params["means"])
    assert all(len(p) == n_final for p in params.values())
