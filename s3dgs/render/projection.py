"""EWA projection of 3D Gaussians to 2D, the math of gsplat's `fully_fused_projection` (pinhole camera).

Differentiable through PyTorch autograd. Written per matrix entry on [C, N] tensors (small batched matmuls are
slow on CPU). Culled Gaussians (behind the near plane, beyond the far plane, outside the image, degenerate, or too
transparent) get radii 0; their other outputs are finite but unused.
"""

from typing import List, Optional, Tuple

import torch
from torch import Tensor

ALPHA_THRESHOLD = 1.0 / 255.0  # contributions below this opacity are skipped (gsplat's ALPHA_THRESHOLD)
EXTEND = 3.33  # bounding box half-size in standard deviations

Sym3 = List[List[Tensor]]  # symmetric 3x3 matrix as nested lists of [N] tensors


def quat_to_rotmat_entries(quats: Tensor) -> List[List[Tensor]]:
    """Rotation matrix rows from quaternions [N, 4] (wxyz, any norm) as 3x3 nested lists of [N] tensors."""
    w, x, y, z = torch.nn.functional.normalize(quats, p=2, dim=-1).unbind(-1)
    return [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]


def _covar_entries(quats: Tensor, scales: Tensor) -> Sym3:
    """R diag(s^2) R^T as a symmetric nested list of [N] tensors."""
    rot = quat_to_rotmat_entries(quats)
    s2 = (scales * scales).unbind(-1)
    cov = [[None] * 3 for _ in range(3)]
    for i in range(3):
        for j in range(i, 3):
            cov[i][j] = cov[j][i] = rot[i][0] * rot[j][0] * s2[0] + rot[i][1] * rot[j][1] * s2[1] \
                + rot[i][2] * rot[j][2] * s2[2]
    return cov


def quat_scale_to_covar(quats: Tensor, scales: Tensor) -> Tensor:
    """World-space covariances R S S^T R^T. quats [N, 4] (wxyz, any norm), scales [N, 3] -> [N, 3, 3]."""
    cov = _covar_entries(quats, scales)
    return torch.stack([torch.stack(row, dim=-1) for row in cov], dim=-2)


def project_gaussians(
    means: Tensor,  # [N, 3]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    quats: Optional[Tensor] = None,  # [N, 4]
    scales: Optional[Tensor] = None,  # [N, 3]
    covars: Optional[Tensor] = None,  # [N, 3, 3], instead of quats and scales
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    opacities: Optional[Tensor] = None,  # [N]
    calc_compensations: bool = False,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Optional[Tensor]]:
    """Project Gaussians into C pinhole cameras.

    Returns radii [C, N, 2] int32 (pixels, 0 = culled), means2d [C, N, 2] (pixels), depths [C, N] (camera z),
    conics [C, N, 3] (upper triangle of the inverse 2D covariance), compensations [C, N] or None
    (sqrt(det(cov2d) / det(cov2d + eps2d I)), the antialiasing factor).
    When `opacities` is given, radii use gsplat's opacity-aware extent min(3.33, sqrt(2 ln(255 opacity))) and
    Gaussians with opacity below 1/255 are culled, as gsplat's CUDA `rasterization` does; without it the extent is
    3.33 (gsplat's `_torch_impl._fully_fused_projection`).
    """
    if covars is None:
        cov = _covar_entries(quats, scales)
    else:  # upper triangle, as gsplat reads it
        cov = [[covars[:, min(i, j), max(i, j)] for j in range(3)] for i in range(3)]
    rot = [[viewmats[:, i, j, None] for j in range(3)] for i in range(3)]  # [C, 1] each
    mx, my, mz = means.unbind(-1)
    x, y, z = (rot[i][0] * mx + rot[i][1] * my + rot[i][2] * mz + viewmats[:, i, 3, None] for i in range(3))
    depth_ok = (z >= near_plane) & (z <= far_plane)
    z_safe = torch.where(depth_ok, z, torch.ones_like(z))  # keeps culled entries finite (no NaN in backward)

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos, lim_x_neg = (width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_y_pos, lim_y_neg = (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    rz = 1.0 / z_safe
    u, v = x * rz, y * rz
    # Jacobian of the pixel map with the view direction clamped 30% beyond the image (gsplat's clamp), times the
    # camera rotation: rows jw0, jw1 of J @ R_cam.
    j00, j11 = fx * rz, fy * rz
    j02 = -fx * torch.minimum(torch.maximum(u, -lim_x_neg), lim_x_pos) * rz
    j12 = -fy * torch.minimum(torch.maximum(v, -lim_y_neg), lim_y_pos) * rz
    jw0 = [j00 * rot[0][k] + j02 * rot[2][k] for k in range(3)]
    jw1 = [j11 * rot[1][k] + j12 * rot[2][k] for k in range(3)]
    cov_jw0 = [cov[k][0] * jw0[0] + cov[k][1] * jw0[1] + cov[k][2] * jw0[2] for k in range(3)]
    cov_jw1 = [cov[k][0] * jw1[0] + cov[k][1] * jw1[1] + cov[k][2] * jw1[2] for k in range(3)]
    a = jw0[0] * cov_jw0[0] + jw0[1] * cov_jw0[1] + jw0[2] * cov_jw0[2]
    b = jw1[0] * cov_jw0[0] + jw1[1] * cov_jw0[1] + jw1[2] * cov_jw0[2]
    c = jw1[0] * cov_jw1[0] + jw1[1] * cov_jw1[1] + jw1[2] * cov_jw1[2]
    means2d = torch.stack([fx * u + cx, fy * v + cy], dim=-1)

    det_orig = a * c - b * b
    a, c = a + eps2d, c + eps2d
    det = a * c - b * b
    det_ok = det > 0
    det_safe = torch.where(det_ok, det, torch.ones_like(det))
    conics = torch.stack([c, -b, a], dim=-1) / det_safe[..., None]
    compensations = None
    if calc_compensations:
        compensations = torch.sqrt(torch.clamp(det_orig / det_safe, min=0.0))

    with torch.no_grad():
        extend = torch.full_like(det, EXTEND)
        visible = depth_ok & det_ok
        if opacities is not None:
            opac = opacities[None].expand_as(det)
            if compensations is not None:
                opac = opac * compensations
            visible &= opac >= ALPHA_THRESHOLD
            extend = torch.minimum(extend, torch.sqrt(2.0 * torch.log(torch.clamp(opac / ALPHA_THRESHOLD, min=1.0))))
        radius_x = torch.ceil(extend * torch.sqrt(torch.clamp(a, min=0.0)))
        radius_y = torch.ceil(extend * torch.sqrt(torch.clamp(c, min=0.0)))
        visible &= (radius_x > radius_clip) | (radius_y > radius_clip)
        px, py = means2d[..., 0], means2d[..., 1]
        visible &= (px + radius_x > 0) & (px - radius_x < width) & (py + radius_y > 0) & (py - radius_y < height)
        radii = torch.stack([radius_x, radius_y], dim=-1) * visible[..., None]
        radii = radii.clamp(max=2**30).to(torch.int32)  # huge Gaussians: keep the int32 cast defined
    return radii, means2d, z, conics, compensations
