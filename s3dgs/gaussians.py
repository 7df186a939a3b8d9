"""Gaussian parameters: colour encoding, optimizers, and the standard 3DGS PLY file (initialisation: :mod:`s3dgs.init`).

Parameters live in a ``torch.nn.ParameterDict`` with gsplat's names and activations: ``means [N, 3]``,
``scales [N, 3]`` (log), ``quats [N, 4]`` (wxyz, unnormalised), ``opacities [N]`` (logit), ``sh0 [N, 1, 3]``
and ``shN [N, K-1, 3]`` (SH coefficients, ``K = (sh_degree + 1)^2``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyParseError

from preprocess.atomic_io import atomic_path

SH_C0 = 0.28209479177387814


def rgb_to_sh(rgb: torch.Tensor) -> torch.Tensor:
    """Colour in [0, 1] -> degree-0 SH coefficient (gsplat adds 0.5 back when rendering)."""
    return (rgb - 0.5) / SH_C0


def make_optimizers(params: torch.nn.ParameterDict, lrs: dict[str, float]) -> dict[str, torch.optim.Adam]:
    """One Adam per parameter (what gsplat's strategies expect), ``eps=1e-15`` as in 3DGS; torch's fused
    kernel (one pass over the state instead of one op per formula term)."""
    return {name: torch.optim.Adam([{"params": p, "lr": lrs[name], "name": name}], eps=1e-15, fused=True)
            for name, p in params.items()}


# ---------------------------------------------------------------- PLY

def ply_fields(sh_rest: int) -> list[str]:
    """Vertex properties of the 3DGS PLY layout (what splat viewers read), for ``sh_rest`` = K-1 SH bands."""
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(3 * sh_rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def save_ply(params: torch.nn.ParameterDict, path: str | Path) -> None:
    """Write the Gaussians as a binary little-endian PLY in the reference 3DGS layout (activations not
    applied: log scales, logit opacity, SH ``f_rest`` ordered channel-major), atomically."""
    p = {k: v.detach().cpu().float() for k, v in params.items()}
    n = len(p["means"])
    rest = p["shN"].transpose(1, 2).reshape(n, -1)
    data = torch.cat([p["means"], torch.zeros(n, 3), p["sh0"].reshape(n, 3), rest, p["opacities"][:, None],
                      p["scales"], p["quats"]], 1).numpy().astype("<f4")
    names = ply_fields(p["shN"].shape[1])
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property float {name}" for name in names] + ["end_header"]
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(("\n".join(header) + "\n").encode())
            f.write(data.tobytes())


def load_ply(path: str | Path) -> dict[str, np.ndarray]:
    """The vertex properties of a PLY, property -> float32 ``[N]``, read by plyfile by name: any property type
    (``double``, ``uchar`` ...: converted by value) and any format (binary either endianness, ASCII).
    Raises ``ValueError`` naming the file when it is not a readable PLY with vertices."""
    try:
        vertices = PlyData.read(str(path))["vertex"].data
        return {name: np.asarray(vertices[name], dtype=np.float32) for name in vertices.dtype.names}
    except (PlyParseError, KeyError, ValueError, TypeError, EOFError) as e:  # TypeError: a list property
        raise ValueError(f"{path}: not a readable PLY with vertices ({str(e).strip() or type(e).__name__}); "
                         "pass the point_cloud.ply of a run or a 3DGS .ply") from None


def gaussians_from_ply(path: str | Path) -> dict[str, torch.Tensor]:
    """The parameters (gsplat's names and shapes, see the module doc; CPU float32) of a 3DGS PLY read by
    :func:`load_ply`. Raises ``ValueError`` naming the file when a 3DGS property is missing."""
    p = load_ply(path)
    rest = sorted((k for k in p if k.startswith("f_rest_")), key=lambda k: int(k[7:]))
    need = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
            "rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [k for k in need if k not in p]
    if missing or len(rest) % 3:
        raise ValueError(f"{path}: not a 3DGS PLY (missing {', '.join(missing) or 'f_rest_* in threes'}); "
                         "pass the point_cloud.ply of a run of python -m s3dgs.train")
    col = lambda *names: torch.from_numpy(np.stack([p[k] for k in names], 1).copy())  # noqa: E731
    n = len(p["x"])
    return {"means": col("x", "y", "z"), "scales": col("scale_0", "scale_1", "scale_2"),
            "quats": col("rot_0", "rot_1", "rot_2", "rot_3"), "opacities": col("opacity")[:, 0],
            "sh0": col("f_dc_0", "f_dc_1", "f_dc_2")[:, None],
            "shN": col(*rest).reshape(n, 3, len(rest) // 3).transpose(1, 2) if rest else torch.zeros(n, 0, 3)}


def sh_degree_of(shN: torch.Tensor) -> int:
    """SH degree stored in ``shN [N, K-1, 3]``."""
    return int(math.isqrt(shN.shape[1] + 1)) - 1
