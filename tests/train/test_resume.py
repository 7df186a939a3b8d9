"""Resume in-process with the real trainer: an interrupted run continues to the parameters the uninterrupted one
reaches, Ctrl-C mid-densification checkpoints at the step boundary, longer runs keep the means moving, and an
incompatible config is refused."""

import signal
from pathlib import Path

import pytest
import torch
from gsplat.strategy import ops as gsplat_ops
from hydra import compose, initialize_config_dir

from s3dgs.checkpoint import read_checkpoint
from s3dgs.trainer import TrainError, Trainer, train

REPO_ROOT = Path(__file__).resolve().parents[2]
# a small run: 200 random Gaussians at the start (a Blender scene has no sparse points), 21 training views of
# 40x30 with priors; a refinement at step 25 (refine_every has a floor of 25; default's refine_stop_iter is
# raised so that it falls inside a 40-step run)
TINY = ["save_renders=false", "init.num_random=200", "sh_degree=1"]


def _cfg(scene: Path, *overrides: str):
    with initialize_config_dir(str(REPO_ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=[f"data_dir={scene}", *TINY, *overrides])


def _train(scene: Path, run_dir: Path, *overrides: str) -> dict:
    run_dir.mkdir(exist_ok=True)  # Hydra's run directory
    return train(_cfg(scene, *overrides), run_dir)


def _params(run_dir: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(run_dir / "ckpt.pt")["params"]


@pytest.mark.parametrize("strategy", ["strategy=mcmc strategy.cap_max=500",
                                      "strategy=default strategy.refine_stop_iter=25000"])
def test_ctrl_c_mid_densification_then_resume_matches_an_uninterrupted_run(blender_scene, tmp_path, monkeypatch,
                                                                         strategy):
    overrides = ["steps=40", *strategy.split()]
    _train(blender_scene, tmp_path / "ref", *overrides)
    reference = _params(tmp_path / "ref")

    # SIGINT arrives while gsplat densifies, after it replaced the first parameter with a longer one
    update = gsplat_ops._update_param_with_optimizer
    sent = []

    def interrupting_update(param_fn, optimizer_fn, params, optimizers, names=None):
        def param_fn_then_sigint(name, p):
            new = param_fn(name, p)
            if not sent and len(new) != len(p):
                sent.append(len(p))
                signal.raise_signal(signal.SIGINT)
            return new
        return update(param_fn_then_sigint, optimizer_fn, params, optimizers, names)

    monkeypatch.setattr(gsplat_ops, "_update_param_with_optimizer", interrupting_update)
    with pytest.raises(KeyboardInterrupt):
        _train(blender_scene, tmp_path / "run", *overrides)
    monkeypatch.undo()
    ck = read_checkpoint(tmp_path / "run" / "ckpt.pt")
    assert ck["step"] == 26  # the refinement of step 25 finished, then the run stopped
    lengths = {k: len(v) for k, v in ck["params"].items()}
    assert len(set(lengths.values())) == 1 and lengths["means"] != sent[0], lengths

    _train(blender_scene, tmp_path / "run", *overrides, "resume=true")
    resumed = _params(tmp_path / "run")
    assert list(resumed) == list(reference)
    for k in reference:  # same process, same threads: the same operations in the same order
        assert resumed[k].shape == reference[k].shape
        torch.testing.assert_close(resumed[k], reference[k], rtol=0, atol=1e-6, msg=k)


def test_more_steps_on_resume_keep_the_means_moving_and_other_configs_are_refused(blender_scene, tmp_path):
    run = tmp_path / "run"
    _train(blender_scene, run, "steps=10", "lambda_depth=0")
    metrics = _train(blender_scene, run, "steps=20", "lambda_depth=0", "resume=true")
    assert metrics["steps"] == 20
    ck = read_checkpoint(run / "ckpt.pt")
    lr = ck["optimizers"]["means"]["param_groups"][0]["lr"]
    extent = Trainer(_cfg(blender_scene, "steps=20"), run).extent
    # the decay from lr.means to lr.means_final is stretched over the 20 steps: step 19 is 1/20 short of the end
    assert lr == pytest.approx(1.6e-4 * extent * (1.6e-6 / 1.6e-4) ** (19 / 20), rel=1e-6)

    refused = {"sh_degree=2": "was trained with sh_degree=1, this config has sh_degree=2",
               "strategy=default": "was trained with strategy.name=mcmc, this config has strategy.name=default",
               "data.num_train_views=5": "was trained with training views=21 views at 40x30",
               "steps=15": "is at step 20, past steps=15"}
    for override, reason in refused.items():
        with pytest.raises(TrainError, match=r"^resume: .*ckpt\.pt " + reason.replace(".", r"\.")):
            _train(blender_scene, run, "steps=20", "resume=true", override)
