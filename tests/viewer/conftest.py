"""Fixtures for the export / viewer tests: a small Gaussian model saved as a run's point_cloud.ply."""

import sys
from pathlib import Path

import pytest
import torch

from s3dgs.gaussians import rgb_to_sh, save_ply

sys.path.insert(0, str(Path(__file__).resolve().parent))  # viewer_browser


def make_gaussians(n: int = 600, sh_degree: int = 2, seed: int = 0) -> torch.nn.ParameterDict:
    """``n`` Gaussians in a ball of radius 1 around the origin, random colours, SH up to ``sh_degree``."""
    g = torch.Generator().manual_seed(seed)
    k = (sh_degree + 1) ** 2
    means = torch.randn(n, 3, generator=g)
    means = means / means.norm(dim=1, keepdim=True) * torch.rand(n, 1, generator=g) ** (1 / 3)
    return torch.nn.ParameterDict({
        "means": means,
        "scales": torch.full((n, 3), -3.0) + 0.3 * torch.randn(n, 3, generator=g),
        "quats": torch.randn(n, 4, generator=g),
        "opacities": 2.0 + torch.randn(n, generator=g),
        "sh0": rgb_to_sh(torch.rand(n, 1, 3, generator=g)),
        "shN": 0.1 * torch.randn(n, k - 1, 3, generator=g),
    })


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A folder holding only ``point_cloud.ply`` (what a run writes first), SH degree 2."""
    d = tmp_path / "run"
    d.mkdir()
    save_ply(make_gaussians(), d / "point_cloud.ply")
    return d
