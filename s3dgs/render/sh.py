"""Real spherical harmonics up to degree 3, evaluated like gsplat (Sloan's formulation, unit directions)."""

import torch
from torch import Tensor

# Normalisation constants of the real SH basis (degree 0..3).
_C0 = 0.28209479177387814
_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, 0.31539156525252005, 0.5462742152960396)
_C3 = (0.5900435899266435, 2.890611442640554, 0.4570457994644658, 0.3731763325901154, 1.445305721320277)


def sh_bases(degree: int, dirs: Tensor) -> Tensor:
    """SH basis values at unit directions.

    dirs: [..., 3] unit vectors. Returns [..., (degree + 1) ** 2] in gsplat's coefficient order.
    """
    if not 0 <= degree <= 3:
        raise ValueError(f"sh_degree must be 0..3, got {degree}")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, _C0)]
    if degree >= 1:
        out += [-_C1 * y, _C1 * z, -_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [
            _C2[0] * x * y,
            -_C2[0] * y * z,
            _C2[1] * (3.0 * zz - 1.0),
            -_C2[0] * x * z,
            _C2[2] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            -_C3[0] * y * (3.0 * xx - yy),
            _C3[1] * x * y * z,
            -_C3[2] * y * (5.0 * zz - 1.0),
            _C3[3] * z * (5.0 * zz - 3.0),
            -_C3[2] * x * (5.0 * zz - 1.0),
            _C3[4] * z * (xx - yy),
            -_C3[0] * x * (xx - 3.0 * yy),
        ]
    return torch.stack(out, dim=-1)


def spherical_harmonics(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Colour from SH coefficients, before gsplat's `+0.5` and clamp.

    dirs: [..., 3] view directions (any length; normalised here). coeffs: [..., K, 3] with K >= (degree+1)^2;
    only the first (degree+1)^2 coefficients are used. Returns [..., 3].
    """
    n_bases = (degree + 1) ** 2
    if coeffs.shape[-2] < n_bases:
        raise ValueError(f"sh_degree {degree} needs {n_bases} coefficients, colors has {coeffs.shape[-2]}")
    unit = torch.nn.functional.normalize(dirs, p=2, dim=-1)
    bases = sh_bases(degree, unit)  # [..., n_bases]
    return (bases[..., None] * coeffs[..., :n_bases, :]).sum(dim=-2)
