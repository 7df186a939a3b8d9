"""The public entry point: backends, info contents, inputs gsplat accepts, clear refusals."""

import subprocess

import pytest
import torch

from s3dgs.render import rasterization
from s3dgs.render.projection import quat_scale_to_covar

GSPLAT_INFO_KEYS = {"batch_ids", "camera_ids", "gaussian_ids", "radii", "means2d", "depths", "conics", "opacities",
                    "tile_width", "tile_height", "tiles_per_gauss", "isect_ids", "flatten_ids", "isect_offsets",
                    "width", "height", "tile_size", "n_batches", "n_cameras"}


def _args(s):
    return (s["means"], s["quats"], s["scales"], s["opacities"], s["colors"], s["viewmats"], s["Ks"], 40, 32)


def test_info_has_gsplat_keys_and_layouts(scene):
    s = scene(50, n_cams=2)
    _, _, info = rasterization(*_args(s), packed=False)
    assert set(info) == GSPLAT_INFO_KEYS
    assert info["radii"].shape == (2, 50, 2) and info["radii"].dtype == torch.int32
    assert info["means2d"].shape == (2, 50, 2) and info["depths"].shape == (2, 50)
    assert info["conics"].shape == (2, 50, 3) and info["opacities"].shape == (2, 50)
    assert info["gaussian_ids"] is None and info["camera_ids"] is None
    assert (info["n_cameras"], info["width"], info["height"], info["tile_size"]) == (2, 40, 32, 16)
    assert info["tiles_per_gauss"].shape == (2, 50)
    assert info["flatten_ids"].numel() == info["tiles_per_gauss"].sum()

    _, _, packed = rasterization(*_args(s), packed=True)
    vis = (info["radii"] > 0).all(-1)
    nnz = int(vis.sum())
    assert packed["radii"].shape == (nnz, 2) and (packed["radii"] > 0).all()
    assert packed["means2d"].shape == (nnz, 2) and packed["gaussian_ids"].shape == (nnz,)
    torch.testing.assert_close(packed["means2d"], info["means2d"][packed["camera_ids"], packed["gaussian_ids"]])
    assert torch.equal(torch.nonzero(vis), torch.stack([packed["camera_ids"], packed["gaussian_ids"]], dim=1))


def test_covars_input_and_no_grad(scene):
    s = scene(50, n_cams=1)
    ref, ref_alpha, _ = rasterization(*_args(s))
    with torch.no_grad():
        out, alpha, _ = rasterization(s["means"], None, None, s["opacities"], s["colors"], s["viewmats"], s["Ks"],
                                      40, 32, covars=quat_scale_to_covar(s["quats"], s["scales"]))
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(alpha, ref_alpha)


def test_backend_choice_and_refusals(scene):
    s = scene(10, n_cams=1)
    with pytest.raises(ValueError, match="backend='gsplat' needs CUDA tensors"):
        rasterization(*_args(s), backend="gsplat")
    with pytest.raises(ValueError, match="backend must be"):
        rasterization(*_args(s), backend="numba")
    with pytest.raises(NotImplementedError, match="camera_model='pinhole' only"):
        rasterization(*_args(s), camera_model="fisheye")
    with pytest.raises(NotImplementedError, match="radial_coeffs"):
        rasterization(*_args(s), radial_coeffs=torch.zeros(1, 6), with_ut=False)
    with pytest.raises(ValueError, match="render_mode"):
        rasterization(*_args(s), render_mode="N")
    with pytest.raises(ValueError, match="no batch dimensions"):
        rasterization(*(t[None] if torch.is_tensor(t) else t for t in _args(s)))
    explicit, _, _ = rasterization(*_args(s), backend="torch")
    auto, _, _ = rasterization(*_args(s))
    torch.testing.assert_close(explicit, auto)


def test_older_gsplat_is_refused_at_import_with_the_fix(tmp_path, repo_env, python):
    # a real distribution record for gsplat 1.4.0 ahead of the installed one on sys.path
    info = tmp_path / "site" / "gsplat-1.4.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gsplat\nVersion: 1.4.0\n")
    env = repo_env | {"PYTHONPATH": f"{info.parent}:{repo_env['PYTHONPATH']}"}
    proc = subprocess.run([python, "-c", "import s3dgs.render"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "ImportError: s3dgs needs gsplat>=1.5 (radii are [..., 2] since 1.5), found gsplat 1.4.0: "
        "pip install 'gsplat>=1.5'")
