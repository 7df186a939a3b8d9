"""python -m s3dgs.export through gsplat's exporter: the files read back as the same Gaussians."""

import math
import subprocess

import numpy as np
import pytest
import torch
from plyfile import PlyData

from s3dgs.export import ExportError, export
from s3dgs.gaussians import SH_C0, gaussians_from_ply


def test_ply_from_the_cli_reads_back_as_the_same_gaussians(run_dir, python, repo_env):
    proc = subprocess.run([python, "-m", "s3dgs.export", str(run_dir), "--format", "ply"], env=repo_env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = run_dir / "model.ply"
    assert proc.stdout.strip() == f"wrote {out}"
    src = gaussians_from_ply(run_dir / "point_cloud.ply")
    v = PlyData.read(str(out))["vertex"]
    assert v.count == 600
    cols = lambda *names: np.stack([v[k] for k in names], 1)  # noqa: E731
    # float32 values copied from file to file: bit-exact
    np.testing.assert_array_equal(cols("x", "y", "z"), src["means"].numpy())
    np.testing.assert_array_equal(cols("scale_0", "scale_1", "scale_2"), src["scales"].numpy())
    np.testing.assert_array_equal(cols("rot_0", "rot_1", "rot_2", "rot_3"), src["quats"].numpy())
    np.testing.assert_array_equal(v["opacity"], src["opacities"].numpy())
    np.testing.assert_array_equal(cols("f_dc_0", "f_dc_1", "f_dc_2"), src["sh0"][:, 0].numpy())
    rest = cols(*(f"f_rest_{i}" for i in range(24)))  # SH degree 2 kept: 8 bands x 3 channels
    np.testing.assert_array_equal(rest, src["shN"].transpose(1, 2).reshape(600, 24).numpy())
    assert gaussians_from_ply(out)["shN"].shape == (600, 8, 3)


def test_splat_has_one_32_byte_record_per_gaussian(run_dir):
    out = export(run_dir, "splat")
    assert out == run_dir / "model.splat"
    src = gaussians_from_ply(run_dir / "point_cloud.ply")
    raw = out.read_bytes()
    assert len(raw) == 32 * 600
    rec = np.frombuffer(raw, np.dtype([("pos", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)]))
    order = np.lexsort(rec["pos"].T)  # records are Morton-sorted: compare as sets of rows
    ref = np.lexsort(src["means"].numpy().T)
    np.testing.assert_array_equal(rec["pos"][order], src["means"].numpy()[ref])
    np.testing.assert_allclose(rec["scale"][order], np.exp(src["scales"].numpy()[ref]), rtol=1e-6)
    rgb = (src["sh0"][:, 0].numpy() * SH_C0 + 0.5).clip(0, 1)[ref]
    assert np.abs(rec["rgba"][order][:, :3] / 255.0 - rgb).max() <= 1 / 255 + 1e-6  # 8-bit, truncated


def test_ply_compressed_has_supersplat_layout(run_dir, tmp_path):
    out = export(run_dir, "ply-compressed", tmp_path / "m.compressed.ply")
    ply = PlyData.read(str(out))
    src = gaussians_from_ply(run_dir / "point_cloud.ply")
    kept = int((torch.sigmoid(src["opacities"]) > 1 / 255).sum())
    assert [e.name for e in ply.elements] == ["chunk", "vertex", "sh"]
    assert ply["chunk"].count == math.ceil(kept / 256) and ply["vertex"].count == kept == ply["sh"].count
    assert [p.name for p in ply["vertex"].properties] == ["packed_position", "packed_rotation", "packed_scale",
                                                          "packed_color"]
    assert len(ply["sh"].properties) == 24  # SH degree 2 kept
    means = src["means"].numpy()
    lo = np.stack([ply["chunk"][f"min_{a}"] for a in "xyz"], 1)
    hi = np.stack([ply["chunk"][f"max_{a}"] for a in "xyz"], 1)
    assert (lo.min(0) == means.min(0)).all() and (hi.max(0) == means.max(0)).all()  # chunk bounds span the model


def test_bad_input_is_one_clear_error(tmp_path):
    with pytest.raises(ExportError, match="point_cloud.ply not found: pass a finished run folder"):
        export(tmp_path, "ply")
    (tmp_path / "x.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\n"
                                     b"end_header\n" + bytes(4))
    with pytest.raises(ExportError, match="x.ply: not a 3DGS PLY"):
        export(tmp_path / "x.ply", "splat")
