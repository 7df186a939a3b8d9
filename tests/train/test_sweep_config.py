"""The Optuna sweeper config composed with the real config files: it optimises `objective` the right way."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf.errors import InterpolationResolutionError

import s3dgs.train  # noqa: F401  (registers ${objective_direction:...} as `python -m s3dgs.train` does)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _optuna_sweeper(*overrides: str):
    with initialize_config_dir(str(REPO_ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/sweeper=optuna_lambda_depth", *overrides], return_hydra_config=True)
    return instantiate(cfg.hydra.sweeper).sweeper  # the plugin's own object, as Hydra builds it for `-m`


@pytest.mark.parametrize("objective, direction", [(None, "maximize"), ("test.depth_abs_rel", "minimize"),
                                                  ("test.depth_delta1", "maximize"), ("test.ssim_masked", "maximize")])
def test_optuna_sweep_optimises_the_objective_in_its_direction(objective, direction):
    sweeper = _optuna_sweeper(*([f"objective={objective}"] if objective else []))
    assert sweeper.direction == direction  # default objective test.psnr: higher is better


def test_objective_without_a_known_direction_names_the_fix():
    with pytest.raises(InterpolationResolutionError,
                       match=r"objective=test.lpips: no known direction .*hydra.sweeper.direction="):
        _optuna_sweeper("objective=test.lpips")
