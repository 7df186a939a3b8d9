"""The gsplat internals s3dgs/strategy.py (and the viewer) override or call, pinned by signature: a gsplat release
that renames or reorders them fails here, by name, instead of at the first densification of a run.

pyproject.toml pins ``gsplat>=1.5,<1.6``, the versions these were checked against; widen both together."""

import dataclasses
import inspect
import re
from importlib.metadata import version
from pathlib import Path

import pytest
from gsplat.strategy import DefaultStrategy, MCMCStrategy
from packaging.requirements import Requirement

REPO_ROOT = Path(__file__).resolve().parents[2]

EXPECTED = {  # "module:qualified name" -> parameter names, in order
    "gsplat.relocation:compute_relocation": ["opacities", "scales", "ratios", "binoms"],
    "gsplat:quat_scale_to_covar_preci": ["quats", "scales", "compute_covar", "compute_preci", "triu"],
    "gsplat.cuda._torch_impl:_quat_scale_to_covar_preci": ["quats", "scales", "compute_covar", "compute_preci",
                                                           "triu"],
    "gsplat.strategy.ops:sample_add": ["params", "optimizers", "state", "n", "binoms", "min_opacity"],
    "gsplat.strategy.ops:reset_opa": ["params", "optimizers", "state", "value"],
    "gsplat.strategy.ops:remove": ["params", "optimizers", "state", "mask"],
    "gsplat.strategy.ops:_update_param_with_optimizer": ["param_fn", "optimizer_fn", "params", "optimizers", "names"],
    "gsplat.strategy:MCMCStrategy._add_new_gs": ["self", "params", "optimizers", "binoms"],
    "gsplat.strategy:MCMCStrategy.step_post_backward": ["self", "params", "optimizers", "state", "step", "info",
                                                        "lr"],
    "gsplat.strategy:DefaultStrategy.step_post_backward": ["self", "params", "optimizers", "state", "step", "info",
                                                           "packed"],
}
# gsplat.strategy.ops must look these names up in its own namespace at call time (strategy.py replaces them there
# to route CPU tensors), and MCMCStrategy must grow through the _add_new_gs that CPUMCMCStrategy overrides.
CALLS = {"gsplat.strategy.ops": ["compute_relocation(", "quat_scale_to_covar_preci("],
         "gsplat.strategy.mcmc": ["self._add_new_gs(params, optimizers, binoms)"]}
FIELDS = {DefaultStrategy: {"refine_start_iter", "refine_stop_iter", "refine_every", "reset_every", "prune_opa"},
          MCMCStrategy: {"cap_max", "min_opacity", "refine_start_iter", "refine_stop_iter", "refine_every"}}


def resolve(target: str):
    module, _, qualname = target.partition(":")
    obj = __import__(module, fromlist=["_"])
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def test_gsplat_is_pinned_to_the_tested_minor_version():
    spec = Requirement(re.search(r'"(gsplat[^"]*)"', (REPO_ROOT / "pyproject.toml").read_text())[1]).specifier
    assert "1.5.0" in spec and "1.5.9" in spec and "1.6.0" not in spec and "1.4.9" not in spec, spec
    assert version("gsplat") in spec, f"gsplat {version('gsplat')} installed: s3dgs is tested with {spec}"


@pytest.mark.parametrize("target", sorted(EXPECTED))
def test_private_gsplat_functions_keep_their_signature(target):
    fn = resolve(target)
    assert list(inspect.signature(fn).parameters) == EXPECTED[target], \
        f"{target}{inspect.signature(fn)} changed: update s3dgs/strategy.py for this gsplat, then this test"


@pytest.mark.parametrize("module", sorted(CALLS))
def test_gsplat_calls_what_strategy_py_replaces(module):
    source = inspect.getsource(__import__(module, fromlist=["_"]))
    for call in CALLS[module]:
        assert call in source, f"{module} no longer calls {call}...): s3dgs/strategy.py's override is not used"


@pytest.mark.parametrize("cls", list(FIELDS), ids=lambda c: c.__name__)
def test_strategy_fields_strategy_py_reads_exist(cls):
    missing = FIELDS[cls] - {f.name for f in dataclasses.fields(cls)}
    assert not missing, f"gsplat's {cls.__name__} has no {', '.join(sorted(missing))}"
