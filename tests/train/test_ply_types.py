"""load_ply / gaussians_from_ply read PLYs from other tools: every property type by value, any format, and a
missing property is one error naming the file and the property."""

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from s3dgs.gaussians import gaussians_from_ply, load_ply, ply_fields

N = 5


def write_ply(path, types: dict[str, str], values: dict[str, np.ndarray], text=False, byte_order="<"):
    """A vertex PLY with each property of ``ply_fields(0)`` (minus any not in ``values``) as ``types[name]``
    (numpy dtype, default float32)."""
    names = [k for k in ply_fields(0) if k in values]
    data = np.empty(N, dtype=[(k, types.get(k, "f4")) for k in names])
    for k in names:
        data[k] = values[k]
    PlyData([PlyElement.describe(data, "vertex")], text=text, byte_order=byte_order).write(str(path))


def values():
    rng = np.random.default_rng(0)
    out = {k: rng.standard_normal(N).astype(np.float32) for k in ply_fields(0)}
    out["x"] = np.array([1e6 + 0.25, -3.5, 0.0, 2.0, 123456.5])  # exact in float32 only when read by value
    out["opacity"] = np.array([0, 1, 17, 200, 255])
    return out


@pytest.mark.parametrize("text, byte_order", [(False, "<"), (False, ">"), (True, "=")])
def test_double_and_uchar_properties_load_by_value(tmp_path, text, byte_order):
    v = values()
    write_ply(tmp_path / "g.ply", {"x": "f8", "y": "f8", "z": "f8", "opacity": "u1", "rot_0": "i2"}, v, text,
              byte_order)
    g = gaussians_from_ply(tmp_path / "g.ply")
    assert all(t.dtype == torch.float32 for t in g.values())
    np.testing.assert_array_equal(g["means"][:, 0].numpy(), v["x"].astype(np.float32))
    np.testing.assert_array_equal(g["opacities"].numpy(), [0.0, 1.0, 17.0, 200.0, 255.0])
    np.testing.assert_array_equal(g["quats"][:, 0].numpy(), v["rot_0"].astype(np.int16).astype(np.float32))
    np.testing.assert_array_equal(g["scales"].numpy(), np.stack([v[f"scale_{i}"] for i in range(3)], 1))
    assert g["shN"].shape == (N, 0, 3)


def test_missing_property_names_the_file_and_the_property(tmp_path):
    v = values()
    del v["opacity"]
    write_ply(tmp_path / "g.ply", {}, v)
    with pytest.raises(ValueError, match=r"g\.ply: not a 3DGS PLY \(missing opacity\); pass the point_cloud\.ply"):
        gaussians_from_ply(tmp_path / "g.ply")


def test_truncated_or_foreign_file_is_one_error_naming_it(tmp_path):
    write_ply(tmp_path / "g.ply", {}, values())
    raw = (tmp_path / "g.ply").read_bytes()
    (tmp_path / "cut.ply").write_bytes(raw[:-7])
    (tmp_path / "no.ply").write_bytes(b"not a ply at all\n")
    for name in ("cut.ply", "no.ply"):
        with pytest.raises(ValueError, match=rf"{name}: not a readable PLY with vertices \(.+\); pass the"):
            load_ply(tmp_path / name)
